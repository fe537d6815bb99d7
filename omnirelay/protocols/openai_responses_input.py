"""The Responses API's request -> the canonical ChatRequest (the protocol is ``openai_responses``).

Input items become canonical messages: ``instructions`` a leading system message, a run of ``reasoning`` /
assistant ``message`` / ``function_call`` items one assistant message (the shape every upstream expects),
``function_call_output`` a tool message. The answer becomes output items in the order the model produced them:
reasoning (its text as the summary, Anthropic's signature as ``encrypted_content``), the message, the function
calls. Stored responses and ``previous_response_id`` are handled by the hooks of
``omnirelay.protocols.openai_responses_store``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from omnirelay.core.errors import invalid
from omnirelay.core.types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from omnirelay.protocols.base import DATA_URL
from omnirelay.protocols.openai_responses_stream import ResponseTemplate
from omnirelay.wire import openai_responses as wire

NAME = "openai_responses"
_request_decoder = msgspec.json.Decoder(wire.ResponsesRequest)
_keys_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_items_decoder = msgspec.json.Decoder(list[wire.InputItem])

# Request fields translated into ChatRequest (or only echoed); any other field is passthrough (``extra``), kept for
# an OpenAI Responses upstream and ignored by every other provider. ``reasoning``, ``text``, ``include`` and
# ``metadata`` are passthrough as well (besides what they translate to), so that upstream gets them as the caller
# wrote them (``reasoning.summary``, ``text.verbosity``, an effort of ``none``/``xhigh``).
_PASSTHROUGH_TOO = frozenset({"reasoning", "text", "include", "metadata"})
_MAPPED_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "metadata",
        "store",
        "previous_response_id",
        "include",
        "user",
        "omnirelay",
    }
)
# A ``namespace`` tool's functions reach the model as ``<namespace>__<name>`` (every upstream takes that as a
# function name) and are split back on the way out.
NAMESPACE_SEPARATOR = "__"
WEB_SEARCH_TYPES = frozenset({"web_search", "web_search_preview", "web_search_2025_08_26"})
_TEXT_FILE_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")


# -- input items -> messages ------------------------------------------------------------------------------------


def _image(part: wire.InputImage, param: str) -> ImagePart:
    url = part.image_url
    if url is None:
        raise invalid("input_image needs an image_url (file ids are not supported)", param=f"{param}.image_url")
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url, detail=part.detail)
    match = DATA_URL.match(url)
    if match is None or not match.group(3):
        raise invalid("input_image.image_url must be an http(s) URL or a base64 data: URL", param=f"{param}.image_url")
    return ImagePart(data=match.group(3), media_type=match.group(1) or "image/png", detail=part.detail)


def _file(part: wire.InputFile, param: str) -> TextPart:
    """A text file, inlined as text (every upstream reads that); other files are refused by name."""
    match = DATA_URL.match(part.file_data or "")
    media_type = (match.group(1) or "") if match else ""
    if match is None or not media_type.startswith(_TEXT_FILE_TYPES):
        raise invalid(
            "input_file is supported for text files given inline as a base64 data: URL (text/*, JSON, XML, YAML)",
            param=f"{param}.file_data",
        )
    try:
        text = base64.b64decode(match.group(3), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid("input_file.file_data is not base64 of UTF-8 text", param=f"{param}.file_data") from None
    return TextPart(text=f"File {part.filename or 'attachment'}:\n{text}")


def _parts(content: str | list[wire.InputContent] | None, param: str, files: bool) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)]
    out: list[Part] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if isinstance(part, wire.InputText | wire.OutputTextIn):
            out.append(TextPart(text=part.text))
        elif isinstance(part, wire.RefusalIn):
            out.append(TextPart(text=part.refusal))
        elif isinstance(part, wire.InputImage) and files:
            out.append(_image(part, where))
        elif isinstance(part, wire.InputFile) and files:
            out.append(_file(part, where))
        else:
            kind = type(part).__struct_config__.tag
            raise invalid(f"content parts of type '{kind}' are not supported here", param=f"{where}.type")
    return out


class _Conversation:
    """Folds items into messages: consecutive assistant-side items (reasoning, assistant messages, function
    calls) make one assistant message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.assistant: Message | None = None
        self.call_names: dict[str, str] = {}

    def _open_assistant(self) -> Message:
        if self.assistant is None:
            self.assistant = Message(role="assistant")
            self.messages.append(self.assistant)
        return self.assistant

    def add(self, item: wire.InputItem, param: str) -> None:
        kind = item.type
        if kind == "message":
            self._message(item, param)
        elif kind == "function_call":
            if not item.call_id or not item.name:
                raise invalid("function_call items need call_id and name", param=f"{param}.call_id")
            name = f"{item.namespace}{NAMESPACE_SEPARATOR}{item.name}" if item.namespace else item.name
            self.call_names[item.call_id] = name
            self._open_assistant().tool_calls.append(
                ToolCall(id=item.call_id, name=name, arguments=item.arguments or "{}")
            )
        elif kind == "function_call_output":
            if not item.call_id:
                raise invalid("function_call_output items need a call_id", param=f"{param}.call_id")
            self.assistant = None
            output = item.output if item.output is not None else ""
            self.messages.append(
                Message(
                    role="tool",
                    content=_parts(output, f"{param}.output", files=False),
                    tool_call_id=item.call_id,
                    name=self.call_names.get(item.call_id),
                )
            )
        elif kind == "reasoning":
            text = "\n\n".join(s.text for s in item.summary)
            if text or item.encrypted_content:
                self._open_assistant().reasoning.append(ReasoningPart(text=text, signature=item.encrypted_content))
        else:
            raise invalid(f"input items of type '{kind}' are not supported", param=f"{param}.type")

    def _message(self, item: wire.InputItem, param: str) -> None:
        role = item.role
        if role == "assistant":
            msg = self._open_assistant()
            if msg.tool_calls:  # text after calls starts a new turn
                self.assistant = None
                msg = self._open_assistant()
            msg.content.extend(_parts(item.content, f"{param}.content", files=False))
            return
        if role is None:
            raise invalid("message items need a role", param=f"{param}.role")
        self.assistant = None
        content = _parts(item.content, f"{param}.content", files=role == "user")
        self.messages.append(Message(role=role, content=content))


def items_to_messages(items: list[wire.InputItem], param: str = "input") -> list[Message]:
    conv = _Conversation()
    for i, item in enumerate(items):
        conv.add(item, f"{param}[{i}]")
    return conv.messages


def decode_items(data: bytes) -> list[wire.InputItem]:
    """A stored item history (JSON array of input/output items)."""
    return _items_decoder.decode(data)


# -- the other request fields -----------------------------------------------------------------------------------


def _function(t: wire.FunctionTool, param: str, namespace: str | None = None) -> Tool:
    if not t.name:
        raise invalid("function tools need a name", param=f"{param}.name")
    name = f"{namespace}{NAMESPACE_SEPARATOR}{t.name}" if namespace else t.name
    return Tool(name=name, description=t.description, parameters=t.parameters or {}, strict=t.strict)


def _namespace(t: wire.FunctionTool, param: str) -> list[Tool]:
    if not t.name:
        raise invalid("namespace tools need a name", param=f"{param}.name")
    out: list[Tool] = []
    for j, inner in enumerate(t.tools or ()):
        if inner.type != "function":
            raise invalid(
                f"tools of type '{inner.type}' are not supported in a namespace (function tools are)",
                param=f"{param}.tools[{j}].type",
            )
        out.append(_function(inner, f"{param}.tools[{j}]", t.name))
    return out


def namespaces(tools: list[wire.FunctionTool]) -> dict[str, tuple[str, str]]:
    """Upstream function name -> (namespace, name) for the functions of ``namespace`` tools."""
    return {
        f"{t.name}{NAMESPACE_SEPARATOR}{inner.name}": (t.name, inner.name)
        for t in tools
        if t.type == "namespace" and t.name
        for inner in t.tools or ()
        if inner.name
    }


def _tools(tools: list[wire.FunctionTool]) -> list[Tool]:
    out: list[Tool] = []
    for i, t in enumerate(tools):
        if t.type == "function":
            out.append(_function(t, f"tools[{i}]"))
        elif t.type == "namespace":
            out.extend(_namespace(t, f"tools[{i}]"))
        elif t.type in WEB_SEARCH_TYPES:
            out.append(Tool(name="web_search"))  # no parameters: the gateway's own server-side search tool
        else:
            raise invalid(
                f"tools of type '{t.type}' are not supported (function, namespace and web_search are)",
                param=f"tools[{i}].type",
            )
    return out


def _tool_choice(tc: str | dict[str, Any] | None) -> ToolChoice | None:
    if tc is None:
        return None
    if isinstance(tc, str):
        if tc not in ("auto", "none", "required"):
            raise invalid(f"unknown tool_choice {tc!r} (auto, none, required)", param="tool_choice")
        return ToolChoice(mode=tc)  # type: ignore[arg-type]  # checked just above
    kind = tc.get("type")
    if kind == "function" and isinstance(tc.get("name"), str):
        return ToolChoice(mode="tool", name=tc["name"])
    if kind in WEB_SEARCH_TYPES:
        return ToolChoice(mode="tool", name="web_search")
    if kind == "allowed_tools" and tc.get("mode") in ("auto", "required"):
        return ToolChoice(mode=tc["mode"])
    raise invalid(f"unsupported tool_choice of type {kind!r}", param="tool_choice.type")


def _response_format(text: wire.TextConfig | None) -> ResponseFormat | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema":
        if fmt.schema is None:
            raise invalid("text.format of type json_schema needs a schema", param="text.format.schema")
        return ResponseFormat(
            type="json_schema", name=fmt.name, schema=fmt.schema, strict=fmt.strict, description=fmt.description
        )
    return ResponseFormat(type="json_object")


def _reasoning(r: wire.ReasoningConfig | None) -> Reasoning | None:
    if r is None or r.effort is None:
        return None
    if r.effort == "none":
        return Reasoning(enabled=False)
    return Reasoning(effort="high" if r.effort == "xhigh" else r.effort)


def _extras(body: bytes) -> dict[str, Any]:
    keys = _keys_decoder.decode(body)
    return {k: msgspec.json.decode(v) for k, v in keys.items() if k not in _MAPPED_FIELDS or k in _PASSTHROUGH_TOO}


class ResponsesChatRequest(ChatRequest, kw_only=True):
    """A canonical request that also carries what the response object echoes of it (its settings and the id
    it will have); everything below the protocol sees a plain ChatRequest."""

    template: ResponseTemplate = msgspec.field(default_factory=lambda: ResponseTemplate())
    wire_request: wire.ResponsesRequest | None = None


def parse(body: bytes) -> ResponsesChatRequest:
    r = _request_decoder.decode(body)
    if not r.model:
        raise invalid("model must not be empty", param="model")
    messages: list[Message] = []
    if r.instructions:
        messages.append(Message(role="system", content=[TextPart(text=r.instructions)]))
    if isinstance(r.input, str):
        messages.append(Message(role="user", content=[TextPart(text=r.input)]))
    else:
        messages.extend(items_to_messages(r.input))
    if not messages and r.previous_response_id is None:
        raise invalid("input must not be empty", param="input")
    return ResponsesChatRequest(
        model=r.model,
        messages=messages,
        stream=bool(r.stream),
        max_tokens=r.max_output_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        tools=_tools(r.tools),
        tool_choice=_tool_choice(r.tool_choice),
        parallel_tool_calls=r.parallel_tool_calls,
        response_format=_response_format(r.text),
        reasoning=_reasoning(r.reasoning),
        user=r.user,
        extra=_extras(body),
        inbound_protocol=NAME,
        options=r.omnirelay or {},
        template=template(r),
        wire_request=r,
    )


def template(r: wire.ResponsesRequest) -> ResponseTemplate:
    """The request's settings the response object echoes."""
    fmt = r.text.format if r.text is not None else None
    text_format: dict[str, Any] = {"type": "text"}
    if fmt is not None and fmt.type != "text":
        text_format = {k: v for k, v in msgspec.structs.asdict(fmt).items() if v is not None}
    reasoning = r.reasoning
    return ResponseTemplate(
        instructions=r.instructions,
        max_output_tokens=r.max_output_tokens,
        parallel_tool_calls=r.parallel_tool_calls is not False,
        previous_response_id=r.previous_response_id,
        reasoning=wire.ReasoningEcho(effort=reasoning.effort, summary=reasoning.summary or reasoning.generate_summary)
        if reasoning is not None
        else None,
        store=r.store is not False,
        temperature=r.temperature,
        text=wire.TextEcho(format=text_format),
        tool_choice=r.tool_choice if r.tool_choice is not None else "auto",
        tools=[msgspec.to_builtins(t) for t in r.tools],
        top_p=r.top_p,
        truncation=r.truncation or "disabled",
        user=r.user,
        metadata=r.metadata or {},
        namespaces=namespaces(r.tools),
    )


def template_of(req: ChatRequest) -> ResponseTemplate:
    return req.template if isinstance(req, ResponsesChatRequest) else ResponseTemplate()
