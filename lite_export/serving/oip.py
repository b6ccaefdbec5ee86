"""The Open Inference Protocol (KServe v2) of ``lite serve``, beside ``/v1/recommend``.

The model is the Triton ``lite`` model that ``lite export --format triton`` writes, with the same
tensors, so one client (``tritonclient.http``, curl, KServe's) works against both servers:

| tensor | datatype | shape | meaning |
|---|---|---|---|
| HISTORY | BYTES | [B, L] | external item ids, oldest first, one history per row |
| K | INT32 (INT64 too) | [1, 1] | optional, default 10; one value per request |
| EXCLUDE_SEEN | BOOL | [1, 1] or [B, 1] | optional, default true |
| ITEM_IDS | BYTES | [B, k] | out: external ids, best first |
| SCORES | FP32 | [B, k] | out: their scores (popularity counts for an empty history) |

Tensor data comes as JSON (``"data"``, flat or nested, row-major) or in the binary tensor data
extension that ``tritonclient.http`` uses by default: the JSON header is the first
``Inference-Header-Content-Length`` bytes of the body, and each input with a
``"binary_data_size"`` parameter takes that many bytes after it, in order (BYTES elements as a
4-byte little-endian length and the bytes; INT32/INT64/BOOL/FP32 little-endian). Outputs are
binary when asked for (``outputs[].parameters.binary_data``, or ``parameters.binary_data_output``
when no outputs are named), JSON otherwise. Request bodies may be gzip or deflate encoded
(``Content-Encoding``); responses are not compressed. Shared-memory inputs and classification
outputs are refused with a 400 that says so.

Every refusal is the protocol's error body ``{"error": "..."}``: 400 for a bad request (Triton's
python model answers 500 for the errors it reports itself, such as unknown ids; lite serve never
answers a 5xx to bad input), 404 for another model or version, 503 + Retry-After while loading or
overloaded. No web framework is imported here.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field

#: the model name and version clients address (those of the Triton repository's python model)
MODEL_NAME = "lite"
MODEL_VERSION = "1"
#: K when the request has none (as the Triton model's DEFAULT_K)
DEFAULT_K = 10
#: (name, datatypes accepted, shape reported in the metadata) of each input, and the outputs
INPUTS = {
    "HISTORY": (("BYTES",), [-1, -1]),
    "K": (("INT32", "INT64"), [-1, 1]),
    "EXCLUDE_SEEN": (("BOOL",), [-1, 1]),
}
OUTPUTS = {"ITEM_IDS": ("BYTES", [-1, -1]), "SCORES": ("FP32", [-1, -1])}
#: little-endian struct codes of the fixed-size datatypes the inputs may use
_FIXED = {"INT32": ("<i", 4), "INT64": ("<q", 8), "BOOL": ("<?", 1)}
EXTENSIONS = ["binary_tensor_data"]


class ProtocolError(Exception):
    """A request the protocol layer refuses: ``status`` (400 unless said) and the message."""

    def __init__(self, message: str, status: int = 400, kind: str = "protocol"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


def is_protocol_path(path: str) -> bool:
    """Paths whose errors use the protocol's ``{"error": ...}`` body."""
    return path == "/v2" or path.startswith(("/v2/health/", "/v2/models"))


def server_metadata(version: str) -> dict:
    return {"name": "lite-export", "version": version, "extensions": EXTENSIONS}


def model_metadata() -> dict:
    """``GET /v2/models/lite``: what Triton answers for the exported ``lite`` model, but the
    platform (Triton says ``python``, its backend)."""
    return {
        "name": MODEL_NAME,
        "versions": [MODEL_VERSION],
        "platform": "lite-export",
        "inputs": [
            {"name": n, "datatype": types[0], "shape": shape}
            for n, (types, shape) in INPUTS.items()
        ],
        "outputs": [{"name": n, "datatype": t, "shape": s} for n, (t, s) in OUTPUTS.items()],
    }


def check_model(name: str, version: str | None = None) -> None:
    """404 (as Triton) for a model or version this server does not serve."""
    if name != MODEL_NAME:
        raise ProtocolError(
            f"Request for unknown model: {name!r} is not found; this server serves "
            f"{MODEL_NAME!r} (GET /v2/models/{MODEL_NAME})",
            404,
            "not_found",
        )
    if version is not None and version not in ("", MODEL_VERSION):
        raise ProtocolError(
            f"Request for unknown model: {name!r} version {version} is not found; its only "
            f"version is {MODEL_VERSION}",
            404,
            "not_found",
        )


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------------- requests
@dataclass
class InferRequest:
    """One decoded ``/infer`` request: B histories and how to answer them."""

    histories: list[list[str]]
    k: int = DEFAULT_K
    exclude_seen: list[bool] = field(default_factory=list)  # one per history
    lenient: bool = False
    id: str | None = None
    #: (output name, binary) in the order to answer them
    outputs: list[tuple[str, bool]] = field(default_factory=list)


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body after ``Content-Encoding`` (gzip or deflate; identity), at most ``limit`` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate"):
        raise ProtocolError(
            f"Content-Encoding {encoding!r} is not supported: send the body as is, gzip or deflate",
            415,
            "content_type",
        )
    d = zlib.decompressobj(wbits=31 if enc == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the body is not valid {enc} data ({exc})") from None
    if len(out) > limit:
        raise ProtocolError(
            f"the {enc} body inflates to more than {limit} bytes (--max-body-bytes)",
            413,
            "body_too_large",
        )
    if not d.eof:
        raise ProtocolError(f"the {enc} body is truncated")
    return out


def _flatten(data, name: str) -> list:
    """Row-major elements of a flat or nested JSON array."""
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: data must be a JSON array, got {type(data).__name__}")
    if not any(isinstance(x, list) for x in data):
        return data
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def _decode_binary(raw: bytes, datatype: str, count: int, name: str) -> list:
    if datatype == "BYTES":
        out, pos, n = [], 0, len(raw)
        while pos < n:
            if pos + 4 > n:
                raise ProtocolError(f"input {name!r}: truncated BYTES element length")
            (size,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + size > n:
                raise ProtocolError(f"input {name!r}: a BYTES element runs past its data")
            out.append(raw[pos : pos + size])
            pos += size
        if len(out) != count:
            raise ProtocolError(
                f"input {name!r}: expected {count} BYTES elements for its shape, got {len(out)}"
            )
        return out
    code, size = _FIXED[datatype]
    if len(raw) != count * size:
        raise ProtocolError(
            f"input {name!r}: {datatype} of {count} elements is {count * size} bytes, got "
            f"binary_data_size {len(raw)}"
        )
    return [v for (v,) in struct.iter_unpack(code, raw)]


def _shape(value, name: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in value)
    ):
        raise ProtocolError(
            f"input {name!r}: shape must be a list of non-negative integers like [1, 3], "
            f"got {value!r}"
        )
    return value


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an ``/infer`` body (JSON, or JSON + binary tensor data); ProtocolError naming the
    problem otherwise. Item ids and K are checked against the model later."""
    binary = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length!r} must be the byte length of "
                f"the JSON header, 0..{len(body)} (the body's length)"
            )
        body, binary = body[:n], body[n:]
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ProtocolError(
            f"the request is not valid JSON ({exc}); send an inference request like "
            '{"inputs": [{"name": "HISTORY", "shape": [1, 2], "datatype": "BYTES", '
            '"data": ["1193", "661"]}]}'
        ) from None
    if not isinstance(doc, dict):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("parameters must be a JSON object")
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise ProtocolError(f"id must be a string, got {type(req_id).__name__}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(
            "the request needs 'inputs': a list with at least the HISTORY tensor (BYTES, shape "
            "[1, L])"
        )
    values: dict[str, tuple[list[int], list]] = {}
    offset = 0
    for spec in inputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError("every input must be an object with a string 'name'")
        name = spec["name"]
        if name not in INPUTS:
            raise ProtocolError(
                f"unexpected inference input {name!r} for model {MODEL_NAME!r}; its inputs are "
                + ", ".join(INPUTS)
            )
        if name in values:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype = spec.get("datatype")
        accepted = INPUTS[name][0]
        if datatype not in accepted:
            raise ProtocolError(
                f"inference input {name!r} data-type is {datatype!r}, but model {MODEL_NAME!r} "
                f"expects {' or '.join(map(repr, accepted))}"
            )
        shape = _shape(spec.get("shape"), name)
        count = math.prod(shape)
        tparams = spec.get("parameters") or {}
        if not isinstance(tparams, dict):
            raise ProtocolError(f"input {name!r}: parameters must be a JSON object")
        if "shared_memory_region" in tparams:
            raise ProtocolError(
                f"input {name!r}: shared memory is not supported by lite serve; send the data "
                "in the request"
            )
        size = tparams.get("binary_data_size")
        if size is not None:
            if "data" in spec:
                raise ProtocolError(f"input {name!r} has both data and binary_data_size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be an integer >= 0")
            if offset + size > len(binary):
                raise ProtocolError(
                    f"input {name!r}: binary_data_size {size} runs past the body's binary data "
                    f"({len(binary) - offset} bytes left); send Inference-Header-Content-Length "
                    "with binary tensors"
                )
            data = _decode_binary(binary[offset : offset + size], datatype, count, name)
            offset += size
        elif "data" in spec:
            data = _flatten(spec["data"], name)
            if len(data) != count:
                raise ProtocolError(
                    f"input {name!r}: shape {shape} holds {count} elements, data has {len(data)}"
                )
        else:
            raise ProtocolError(f"input {name!r} has no data (neither 'data' nor binary data)")
        values[name] = (shape, data)
    if offset != len(binary):
        raise ProtocolError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    if "HISTORY" not in values:
        raise ProtocolError("input 'HISTORY' is required (BYTES, shape [1, L]: the item ids)")
    shape, data = values["HISTORY"]
    if len(shape) != 2 or shape[0] < 1:
        raise ProtocolError(
            f"input 'HISTORY' must have shape [B, L] (B >= 1 histories of L ids; [1, L] for "
            f"one), got {shape}"
        )
    rows, width = shape
    ids = []
    for v in data:
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("input 'HISTORY': item ids must be UTF-8") from None
        elif not isinstance(v, str):
            raise ProtocolError(
                f"input 'HISTORY': item ids are strings (as in items.jsonl), got {v!r}"
            )
        ids.append(v)
    histories = [ids[r * width : (r + 1) * width] for r in range(rows)]
    k = DEFAULT_K
    if "K" in values:
        ks = values["K"][1]
        if len(ks) not in (1, rows) or any(
            isinstance(x, bool) or not isinstance(x, int) for x in ks
        ):
            raise ProtocolError(
                f"input 'K' must hold one integer (shape [1, 1]), or one per history, got {ks!r}"
            )
        if len(set(ks)) != 1:
            raise ProtocolError(f"input 'K' must be the same for every history of a request: {ks}")
        k = ks[0]
    exclude = [True] * rows
    if "EXCLUDE_SEEN" in values:
        es = values["EXCLUDE_SEEN"][1]
        if len(es) not in (1, rows) or any(not isinstance(x, bool) for x in es):
            raise ProtocolError(
                "input 'EXCLUDE_SEEN' must hold one boolean (shape [1, 1]), or one per history"
            )
        exclude = es * rows if len(es) == 1 else list(es)
    lenient = params.get("lenient", False)
    if not isinstance(lenient, bool):
        raise ProtocolError("parameters.lenient must be true or false")
    binary_out = params.get("binary_data_output", False)
    if not isinstance(binary_out, bool):
        raise ProtocolError("parameters.binary_data_output must be true or false")
    outputs = doc.get("outputs")
    if outputs is None:
        wanted = [(n, binary_out) for n in OUTPUTS]
    else:
        if not isinstance(outputs, list):
            raise ProtocolError('outputs must be a list of objects like {"name": "ITEM_IDS"}')
        wanted = []
        for out in outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise ProtocolError("every output must be an object with a string 'name'")
            if out["name"] not in OUTPUTS:
                raise ProtocolError(
                    f"unexpected inference output {out['name']!r} for model {MODEL_NAME!r}; its "
                    "outputs are " + ", ".join(OUTPUTS)
                )
            oparams = out.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise ProtocolError(f"output {out['name']!r}: parameters must be a JSON object")
            if oparams.get("classification"):
                raise ProtocolError("classification outputs are not supported by lite serve")
            if "shared_memory_region" in oparams:
                raise ProtocolError("shared-memory outputs are not supported by lite serve")
            binary = oparams.get("binary_data", binary_out)
            if not isinstance(binary, bool):
                raise ProtocolError(f"output {out['name']!r}: binary_data must be true or false")
            if any(out["name"] == w[0] for w in wanted):
                raise ProtocolError(f"output {out['name']!r} is asked for twice")
            wanted.append((out["name"], binary))
    return InferRequest(histories, k, exclude, lenient, req_id, wanted)


# ---------------------------------------------------------------------- responses
def encode_infer(req: InferRequest, results: list[dict], model_id: str) -> tuple[bytes, list]:
    """(body, headers) of the answer: ``results`` are the /v1/recommend answers, one per history
    (all with ``req.k`` items)."""
    rows = len(results)
    k = len(results[0]["items"]) if results else 0
    header: dict = {}
    if req.id is not None:
        header["id"] = req.id
    header.update(
        {
            "model_name": MODEL_NAME,
            "model_version": MODEL_VERSION,
            "parameters": {"model": model_id},
        }
    )
    outs, blobs = [], []
    for name, binary in req.outputs:
        datatype = OUTPUTS[name][0]
        out = {"name": name, "datatype": datatype, "shape": [rows, k]}
        if name == "ITEM_IDS":
            values = [i["id"] for r in results for i in r["items"]]
            if binary:
                raw = b"".join(
                    struct.pack("<I", len(b)) + b for b in (v.encode("utf-8") for v in values)
                )
        else:
            values = [i["score"] for r in results for i in r["items"]]
            if binary:
                raw = struct.pack(f"<{len(values)}f", *values)
        if binary:
            out["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            out["data"] = values
        outs.append(out)
    header["outputs"] = outs
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    if not blobs:
        return head, [(b"content-type", b"application/json")]
    return head + b"".join(blobs), [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(head)).encode()),
    ]


# ---------------------------------------------------------------------- OpenAPI (documentation)
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "enum": list(INPUTS)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BYTES", "INT32", "INT64", "BOOL"]},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}
INFER_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "binary_data_output": {"type": "boolean"},
                "lenient": {
                    "type": "boolean",
                    "description": "lite-export extension: drop unknown item ids instead of 400",
                },
            },
        },
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": list(OUTPUTS)},
                    "parameters": {"type": "object"},
                },
            },
        },
    },
    "example": {
        "inputs": [
            {"name": "HISTORY", "shape": [1, 2], "datatype": "BYTES", "data": ["1193", "661"]},
            {"name": "K", "shape": [1, 1], "datatype": "INT32", "data": [10]},
        ]
    },
}
