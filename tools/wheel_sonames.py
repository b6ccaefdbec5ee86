"""Record which shared libraries the `gpu` extra's pinned wheels need (ELF NEEDED) and provide.

    python tools/wheel_sonames.py                      # rewrite tools/wheel_sonames.json
    python tools/wheel_sonames.py --also tensorrt==11.4.0.106   # record another version too

For onnxruntime-gpu and tensorrt as pinned in pyproject.toml's `gpu` extra, this downloads each
distribution PyPI serves with `pip download --no-deps` into a temporary folder (never into the
repository; onnxruntime-gpu's wheel is ~250 MB), follows metapackages through the Requires-Dist
pins of their PKG-INFO (tensorrt -> tensorrt_cuXX -> tensorrt_cuXX_libs + tensorrt_cuXX_bindings),
and runs `readelf -d` on every shared library inside a wheel: its SONAME and NEEDED entries.
tensorrt_cuXX_libs, which holds libnvinfer itself, is a small sdist stub whose build fetches the
real wheel from NVIDIA's index (pypi.nvidia.com, `[tool.wheel_stub] index_url`); where that index
is unreachable it is recorded as such, and what it provides is read from the bindings wheel of
the same version, which links against it (`tensorrt_bindings/tensorrt.so` NEEDED
`libnvinfer.so.<major>`).

The JSON table is small and checked in: tests/exporters/test_gpu_pins.py compares it with the
pins on every CI run, without downloading anything. Run this after changing a pin.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tools" / "wheel_sonames.json"
PACKAGES = ("onnxruntime-gpu", "tensorrt")


def gpu_pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """``{name: version}`` of the exact pins in the `gpu` extra."""
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["gpu"]
    pins = {}
    for req in extra:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^;\s]+)\s*(;.*)?", req)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def _requires(metadata: str) -> list[str]:
    msg = email.parser.Parser().parsestr(metadata)
    return [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]


def _readelf(path: Path) -> dict:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out.stdout)
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[(.+?)\]", out.stdout)
    return {"soname": soname[0] if soname else None, "needed": needed}


def _download(spec: str, dest: Path) -> tuple[Path | None, str]:
    """(the downloaded file, pip's output); None when pip could not get it."""
    before = set(dest.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", spec,
         "-d", str(dest)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    new = sorted(set(dest.iterdir()) - before)
    return (new[0] if new else None), proc.stdout + proc.stderr


def describe(spec: str, work: Path) -> dict:
    """What one ``name==version`` distribution is: its wheel's libraries or its sdist's pins."""
    path, log = _download(spec, work)
    if path is None:
        stub = re.search(r"(https://pypi\.nvidia\.com[^\s'\"]*?)[.,;]?(?:[\s'\"]|$)", log)
        return {
            "unavailable": "pip could not download it here"
            + (f"; its sdist builds by fetching from {stub.group(1)}" if stub else ""),
        }
    entry: dict = {"file": path.name}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            entry["requires"] = _requires(whl.read(meta).decode())
            libs = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name in whl.namelist():
                    if re.search(r"\.so(\.\d+)*$", name):
                        whl.extract(name, tmp)
                        libs[name] = _readelf(Path(tmp) / name)
            entry["libraries"] = libs
    else:  # an sdist: a metapackage, or a stub that fetches its wheel elsewhere
        with tarfile.open(path) as tar:
            pkg_info = next(m for m in tar.getmembers() if m.name.count("/") == 1 and
                            m.name.endswith("/PKG-INFO"))  # fmt: skip
            entry["requires"] = _requires(tar.extractfile(pkg_info).read().decode())
            pyproject = next(
                (m for m in tar.getmembers() if m.name.endswith("/pyproject.toml")), None
            )
            if pyproject is not None:
                toml = tomllib.loads(tar.extractfile(pyproject).read().decode())
                stub = toml.get("tool", {}).get("wheel_stub")
                if stub:
                    entry["wheel_stub_index"] = stub.get("index_url")
    path.unlink()
    return entry


def record(specs: list[str]) -> dict:
    table: dict = {}
    with tempfile.TemporaryDirectory(prefix="wheel-sonames-") as tmp:
        queue = list(specs)
        while queue:
            spec = queue.pop(0)
            name, version = spec.split("==")
            key = f"{_norm(name)}=={version}"
            if key in table:
                continue
            print(f"  {key}", file=sys.stderr)
            table[key] = entry = describe(key, Path(tmp))
            for req in entry.get("requires", []):
                m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^;\s]+)\s*", req)
                if m and _norm(m.group(1)).startswith("tensorrt"):
                    queue.append(f"{_norm(m.group(1))}=={m.group(2)}")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=TABLE)
    ap.add_argument("--also", nargs="*", default=[], help="more name==version to record")
    args = ap.parse_args(argv)
    pins = gpu_pins()
    specs = [f"{name}=={pins[name]}" for name in PACKAGES] + list(args.also)
    table = {
        "_written_by": "tools/wheel_sonames.py (lite-export); rerun after changing a gpu pin",
        "pins": {name: pins[name] for name in PACKAGES},
        "distributions": record(specs),
    }
    args.out.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
