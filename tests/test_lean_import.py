import json
import subprocess
import sys

HEAVY = ["tensorrt", "triton", "onnxruntime", "torch", "transformers"]
#: the serve / bench extras: imported only by the commands that use them
EXTRAS = ["fastapi", "uvicorn", "httpx", "aiohttp", "matplotlib"]


def test_import_lite_export_is_light():
    code = (
        "import sys, json, lite_export; lite_export.__version__; "
        f"print(json.dumps([m for m in {HEAVY + EXTRAS!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip()) == []


def test_cli_help_does_not_import_runtimes():
    code = (
        "import sys, json\n"
        "from lite_export.cli import app\n"
        "from typer.testing import CliRunner\n"
        "CliRunner().invoke(app, ['--help'])\n"
        f"print(json.dumps([m for m in {['tensorrt', 'triton', 'onnxruntime', *EXTRAS]!r} "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
