"""``POST /v1/files``: the multipart form (python-multipart, on the body already read under its size limit) and
the batch input file, every line checked as OpenAI's Batch API takes it: a JSON object with a unique
``custom_id``, ``method`` POST, a ``url`` the gateway batches (one per file), and a ``body`` that the target
endpoint's protocol decodes. A bad line is a 400 naming its line number."""

from __future__ import annotations

import msgspec
from python_multipart.multipart import MultipartParser, parse_options_header

from omnirelay.batches.targets import OPENAI_ENDPOINTS, parse_item
from omnirelay.core.errors import GatewayError, invalid

MAX_CUSTOM_ID = 512


class FormPart(msgspec.Struct, kw_only=True):
    name: str
    filename: str | None = None
    data: bytes = b""


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    _, params = parse_options_header(headers.get(b"content-disposition", b""))
    name = params.get(b"name", b"").decode("utf-8", "replace")
    filename = params.get(b"filename")
    return name, None if filename is None else filename.decode("utf-8", "replace")


def parse_form(content_type: str, body: bytes) -> dict[str, FormPart]:
    """The parts of a ``multipart/form-data`` body by field name (400 when it is not one)."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise invalid("the request must be multipart/form-data with a `file` and a `purpose` field")
    parts: dict[str, FormPart] = {}
    headers: dict[bytes, bytes] = {}
    field: list[bytes] = []
    chunks: list[bytes] = []
    value: list[bytes] = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.append(data[start:end])

    def on_header_end() -> None:
        headers[b"".join(field).lower()] = b"".join(value)
        field.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_part_end() -> None:
        name, filename = _disposition(headers)
        parts[name] = FormPart(name=name, filename=filename, data=b"".join(chunks))
        headers.clear()
        chunks.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own error types for malformed input
        raise invalid(f"the multipart body is malformed: {exc}") from None
    return parts


class InputLine(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class BatchInput(msgspec.Struct, kw_only=True):
    """One request of an input file."""

    custom_id: str
    url: str
    body: bytes


_line_decoder = msgspec.json.Decoder(InputLine)


def _line_error(n: int, message: str) -> GatewayError:
    return invalid(f"Line {n} of the batch input file: {message}", param=f"line {n}")


def _read_line(n: int, raw: bytes) -> InputLine:
    try:
        line = _line_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _line_error(n, str(exc).replace(" - at `$`", "")) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _line_error(n, f"not valid JSON ({exc})") from None
    if not line.custom_id or len(line.custom_id) > MAX_CUSTOM_ID:
        raise _line_error(n, f"custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} characters")
    if line.method != "POST":
        raise _line_error(n, f"method must be POST, not {line.method!r}")
    if line.url not in OPENAI_ENDPOINTS:
        raise _line_error(n, f"url must be one of {', '.join(OPENAI_ENDPOINTS)}, not {line.url!r}")
    if not bytes(line.body).lstrip().startswith(b"{"):
        raise _line_error(n, "body must be a JSON object")
    return line


def read_batch_input(content: bytes, max_requests: int) -> list[BatchInput]:
    """Every line checked (see the module docstring); blank lines are skipped."""
    out: list[BatchInput] = []
    seen: set[str] = set()
    url: str | None = None
    for n, raw in enumerate(content.split(b"\n"), 1):
        if not raw.strip():
            continue
        line = _read_line(n, raw)
        if line.custom_id in seen:
            raise _line_error(n, f"custom_id {line.custom_id!r} is used by an earlier line; each must be unique")
        if url is not None and line.url != url:
            raise _line_error(n, f"url {line.url!r} differs from the earlier lines' {url!r}; a batch has one endpoint")
        body = bytes(line.body)
        try:
            parse_item(line.url, body)
        except GatewayError as err:
            where = f" (body.{err.param})" if err.param else ""
            raise _line_error(n, f"{err.message}{where}") from None
        seen.add(line.custom_id)
        url = line.url
        out.append(BatchInput(custom_id=line.custom_id, url=line.url, body=body))
        if len(out) > max_requests:
            raise _line_error(n, f"a batch file holds at most {max_requests} requests")
    if not out:
        raise invalid("the batch input file has no requests", param="file")
    return out
