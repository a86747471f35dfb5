"""Tools a language model can call: plain Python functions, described by a JSON schema, called safely.

    calculator = Tool(calculate)              the schema from the signature and docstring
    tools = ToolBox([calculator])
    tools.describe()                          the text a system prompt shows the model (name, description, schema)
    call = parse_tool_call(turn_text)         the model's call, or None
    tools.run(call) -> ToolResult             text for the model; ok / error / timeout / truncated

The call format is a tag in the model's text, for every model (SmolLM2's chat template has no tool format, and a
model trained here has no template at all):

    <tool_call>{"name": "calculate", "arguments": {"expression": "1234*5678"}}</tool_call>    JSON (Hermes, Qwen)
    <tool_call>calculate 1234*5678</tool_call>                                             short: one argument

and the result comes back as `<tool_response>...</tool_response>`. A turn that makes a call ends at
`</tool_call>` (a stop string), so the model sees the result before it goes on.

Whatever a tool does is contained: an exception becomes its error text for the model ("error: ZeroDivisionError:
division by zero"), a call past `timeout_s` is abandoned (as rewards.py does: the thread cannot be killed and runs
on in the background), and a result longer than `max_chars` is cut. Each outcome is counted (ToolStats).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plainrl.kit.errors import ConfigError
from plainrl.llm.rewards import call_with_timeout

CALL_START, CALL_END = "<tool_call>", "</tool_call>"
TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class ToolResult:
    text: str  # what the model reads inside <tool_response>
    outcome: str  # ok | error | timeout | truncated | unknown_tool | bad_call


class Tool:
    """A Python function as a tool: name, description (the docstring's first paragraph) and a JSON schema of its
    parameters (from the type hints; str where there is none)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = description if description is not None else doc.split("\n\n")[0].replace("\n", " ")
        hints = typing.get_type_hints(fn)
        self.parameters = list(inspect.signature(fn).parameters.values())
        properties = {p.name: {"type": JSON_TYPES.get(hints.get(p.name, str), "string")} for p in self.parameters}
        required = [p.name for p in self.parameters if p.default is inspect.Parameter.empty]
        self.schema = {
            "name": self.name,
            "description": self.description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        }


@dataclass
class ToolStats:
    calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.calls += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class ToolBox:
    """Tools by name, each call contained (see the module doc)."""

    def __init__(self, tools: Sequence[Tool | Callable[..., Any]], timeout_s: float = 5.0, max_chars: int = 200):
        self.tools = {t.name: t for t in (t if isinstance(t, Tool) else Tool(t) for t in tools)}
        self.timeout_s, self.max_chars = timeout_s, max_chars
        self.stats = ToolStats()

    def describe(self) -> str:
        """The tools for a system prompt: one JSON schema a line, and how to call them."""
        schemas = "\n".join(json.dumps(t.schema) for t in self.tools.values())
        return (
            f"You can call these tools:\n{schemas}\n"
            f'Call one as {CALL_START}{{"name": ..., "arguments": {{...}}}}{CALL_END}; '
            "the result comes back inside <tool_response></tool_response>."
        )

    def run(self, call: ToolCall | str) -> ToolResult:
        """Call a tool (a parsed call, or the raw text inside the tags); never raises."""
        result = self._run(call)
        self.stats.count(result.outcome)
        return result

    def _run(self, call: ToolCall | str) -> ToolResult:
        if isinstance(call, str):
            parsed = parse_call_body(call, self.tools)
            if parsed is None:
                return ToolResult(f"error: cannot read the tool call {call[:80]!r}", "bad_call")
            call = parsed
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"error: no tool {call.name!r}; tools: {', '.join(self.tools)}", "unknown_tool")
        try:
            value = call_with_timeout(tool.fn, (), call.arguments, self.timeout_s)
        except TimeoutError:
            return ToolResult(f"error: {call.name} took longer than {self.timeout_s} s", "timeout")
        except Exception as err:  # noqa: BLE001 - the model reads the error, training goes on
            return ToolResult(f"error: {type(err).__name__}: {err}"[: self.max_chars], "error")
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > self.max_chars:
            return ToolResult(text[: self.max_chars] + " ...[cut]", "truncated")
        return ToolResult(text, "ok")


def parse_tool_call(text: str) -> str | None:
    """The body of the first <tool_call>...</tool_call> in a turn, or None."""
    found = TOOL_CALL.search(text)
    return found.group(1).strip() if found else None


def parse_call_body(body: str, tools: dict[str, Tool]) -> ToolCall | None:
    """A call's body: JSON {"name", "arguments"}, or the short form "name argument" (the tool's first parameter)."""
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return None
        arguments = data.get("arguments", {}) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(arguments, dict):
            return None
        return ToolCall(data["name"], arguments)
    name, _, argument = body.partition(" ")
    tool = tools.get(name)
    if tool is None:
        return ToolCall(name, {})
    if not tool.parameters:
        return ToolCall(name, {})
    return ToolCall(name, {tool.parameters[0].name: argument.strip()})


def tool_response(result: ToolResult) -> str:
    return f"<tool_response>{result.text}</tool_response>"


def check_tools(tools: Sequence[Any]) -> None:
    for tool in tools:
        if not callable(tool) and not isinstance(tool, Tool):
            raise ConfigError(f"tool {tool!r} is not a function")
