"""The one typed key reader: a mapping (parsed YAML, or environment text) into a frozen dataclass.

Every settings file of driftline is read by :func:`read` from the dataclass that holds it: the
dataclass's fields are the allowed keys, their type hints the expected types and their
defaults the defaults; a bound, a choice list or an extra rule is declared once, on the field,
with :func:`key`. So adding a key is adding a field. Pure: no I/O. One module of ~460 lines on purpose: every
supported type's check and message is here, once, instead of in each settings module.

What it does, the same way for every file:

* an unknown key fails naming its full dotted path, the closest allowed key and all of them;
* a wrong type or an out-of-bounds value fails naming the path, what was expected and what it got;
* types: ``bool``, ``int``, ``float`` (finite; an integer is accepted), non-empty ``str``,
  ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` and ``tuple[X, Y]`` (from a list),
  ``dict[str, X]``/``Mapping[str, X]``, nested dataclasses, ``Any`` (taken as is), and any other
  class built from a non-empty string (e.g. ``config.Secret``);
* a value given as :class:`EnvText` (an environment variable) is parsed from its text, and the
  errors name the variable;
* overrides: ``base`` (an instance or a mapping) supplies the values of absent keys, so
  per-model settings start from the defaults (``key(base="defaults")`` on a ``dict`` field
  makes every entry start from the sibling field ``defaults``).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Window:
...     size_seconds: int = key(300, ge=1)
...     alpha: float = key(0.01, gt=0, lt=1)
>>> read(Window, {"size_seconds": 60}, "windows")
Window(size_seconds=60, alpha=0.01)
>>> read(Window, {"size_second": 60}, "windows")
Traceback (most recent call last):
...
driftline.keys.SettingsError: windows.size_second: unknown key, did you mean size_seconds? (allowed: size_seconds, alpha)
>>> read(Window, {"alpha": "high"}, "windows")
Traceback (most recent call last):
...
driftline.keys.SettingsError: windows.alpha: expected a number in (0, 1), got 'high'
>>> read(Window, {"size_seconds": EnvText("0", "DRIFTLINE_WINDOWS_SIZE_SECONDS")}, "windows")
Traceback (most recent call last):
...
driftline.keys.SettingsError: windows.size_seconds (from DRIFTLINE_WINDOWS_SIZE_SECONDS): expected an integer >= 1, got '0'
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

__all__ = [
    "Bound",
    "EnvText",
    "RuleError",
    "SettingsError",
    "declared",
    "key",
    "read",
    "yaml_problem",
]

_T = TypeVar("_T")
_NOTHING: Any = dataclasses.MISSING
_SPEC = "driftline.keys"  # the metadata entry of a field declared with key()


class SettingsError(ValueError):
    """A settings file (or variable) is invalid; the message starts with the key path. The
    errors the callers catch (``ConfigError``, ``ThresholdsError``, ...) derive from it."""


class RuleError(ValueError):
    """Raised by a dataclass's ``__post_init__`` for a rule across its fields: the reader turns
    it into the caller's error with the full path of ``key``."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


class EnvText(str):
    """A value read from the environment variable ``variable``: parsed from its text by type."""

    variable: str

    def __new__(cls, text: str, variable: str) -> EnvText:
        self = super().__new__(cls, text)
        self.variable = variable
        return self


@dataclass(frozen=True, slots=True)
class Bound:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (each optional).

    >>> str(Bound(gt=0, le=1)), str(Bound(ge=1)), Bound(gt=0, lt=1).holds(1.0)
    ('in (0, 1]', '>= 1', False)
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def __str__(self) -> str:
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"in {left}{_number(low)}, {_number(high)}{right}"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_number(low)}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {_number(high)}"
        return ""


def _number(bound: float) -> str:
    """A bound as a reader writes it: integers whole (66060288, not 6.60603e+07).

    >>> _number(66060288), _number(0.05), _number(1e-6)
    ('66060288', '0.05', '1e-06')
    """
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True, slots=True)
class _Spec:
    bound: Bound | None = None
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    check: Callable[[Any], str | None] | None = None  # the problem's description, or None
    spread: Callable[[], Mapping[str, Bound | None]] | None = None
    without: tuple[str, ...] = ()
    base: str | None = None
    derive: Callable[[Mapping[str, Any]], Any] | None = None

    def allowed(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


_NO_SPEC = _Spec()


def key(
    default: Any = _NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None,
    check: Callable[[Any], str | None] | None = None,
    spread: Callable[[], Mapping[str, Bound | None]] | None = None,
    without: tuple[str, ...] = (),
    base: str | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Any:
    """A dataclass field with what the reader checks besides its type, declared once.

    ``ge``/``gt``/``le``/``lt``: bounds of a number (of each item of a tuple or dict);
    ``choices``: the allowed strings (or a function returning them, for a registry);
    ``check``: a function returning a description of what is wrong with the value, or None;
    ``spread``: a ``dict`` field whose entries are written as keys of the enclosing mapping,
    a function returning those keys with their bounds (e.g. one key per statistical test);
    ``without``: keys of a nested dataclass not allowed here; ``base``: for a ``dict`` of
    dataclasses, the sibling field each entry starts from; ``derive``: the default when the key
    is absent, from the other fields' values (read first).
    """
    bound = Bound(ge, gt, le, lt) if (ge, gt, le, lt) != (None,) * 4 else None
    spec = _Spec(bound, choices, check, spread, without, base, derive)
    metadata = {_SPEC: spec}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(f: dataclasses.Field[Any]) -> tuple[Bound | None, tuple[str, ...] | None]:
    """The bound and the choices declared on a field with :func:`key` (for generated docs)."""
    spec = _spec(f)
    return spec.bound, spec.allowed()


def read(
    cls: type[_T],
    raw: Any,
    path: str = "",
    *,
    base: Any = None,
    error: type[SettingsError] = SettingsError,
) -> _T:
    """``raw`` (a mapping; None is empty) as a ``cls``, checked; ``path`` is its dotted key path
    in the file, ``base`` an instance (or mapping) giving the absent keys' values, ``error``
    the exception class raised."""
    return typing.cast(_T, _Reader(error).dataclass(cls, raw, path, base, ()))


def yaml_problem(exc: Exception) -> str:
    """A YAML parser's error in one line: where and what (PyYAML's own text spans lines)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# -- the reader -------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str, value: Any) -> str:
    where = path or "(top level)"
    return f"{where} (from {value.variable})" if isinstance(value, EnvText) else where


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _spec(f: dataclasses.Field[Any]) -> _Spec:
    spec = f.metadata.get(_SPEC, _NO_SPEC)
    assert isinstance(spec, _Spec)
    return spec


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NOTHING


def _optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (types.UnionType, typing.Union):
        args = get_args(hint)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return inner[0], type(None) in args
    return hint, False


def _expected(hint: Any, spec: _Spec = _NO_SPEC) -> str:
    """What a value of type ``hint`` must be, in words.

    >>> _expected(tuple[float, float], _Spec(Bound(ge=0, le=1)))
    'a list of 2 numbers in [0, 1]'
    """
    hint, _ = _optional(hint)
    origin, args = get_origin(hint), get_args(hint)
    bound = f" {spec.bound}" if spec.bound else ""
    allowed = spec.allowed()
    if allowed is not None:
        return "one of " + ", ".join(allowed)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if hint is bool:
        return "true or false"
    if hint is int:
        return f"an integer{bound}"
    if hint is float:
        return f"a number{bound}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return "a list"
        inner = _expected(args[0], spec).removeprefix("an ").removeprefix("a ")
        return f"a list of {len(args)} {inner.replace('number', 'numbers', 1)}"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return "a mapping"
    return "a non-empty string"


class _Reader:
    def __init__(self, error: type[SettingsError]) -> None:
        self.error = error

    def fail(self, path: str, value: Any, detail: str) -> SettingsError:
        return self.error(f"{_where(path, value)}: {detail}")

    def wrong(self, hint: Any, value: Any, path: str, spec: _Spec) -> SettingsError:
        """Expected what, got what (and the closest choice, if one is close)."""
        options = spec.allowed() or [str(a) for a in get_args(hint) if get_origin(hint) is Literal]
        close = difflib.get_close_matches(value, options, n=1) if isinstance(value, str) else []
        near = f" (did you mean {close[0]}?)" if close else ""
        return self.fail(path, value, f"expected {_expected(hint, spec)}, got {value!r}{near}")

    def mapping(self, raw: Any, path: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise self.fail(path, raw, f"expected a mapping, got {raw!r}")
        for name in raw:
            if not isinstance(name, str) or not name:
                raise self.fail(path, raw, f"expected non-empty string keys, got {name!r}")
        return raw

    def dataclass(
        self, cls: type[Any], raw: Any, path: str, base: Any, without: tuple[str, ...]
    ) -> Any:
        data = self.mapping(raw, path)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        allowed: list[str] = []
        for f in fields:
            spec = _spec(f)
            if f.name not in without:
                allowed += list(spec.spread()) if spec.spread else [f.name]
        for name in data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f", did you mean {close[0]}?" if close else ""
                raise self.fail(
                    _join(path, name),
                    data[name],
                    f"unknown key{hint} (allowed: {', '.join(allowed)})",
                )
        if dataclasses.is_dataclass(base):
            given = {f.name: getattr(base, f.name) for f in fields}
        else:
            given = dict(base or {})
        values: dict[str, Any] = {}
        derived = []
        for f in fields:
            spec, hint, where = _spec(f), _hints(cls)[f.name], _join(path, f.name)
            start = given.get(f.name, _NOTHING)
            if start is _NOTHING:
                start = _default(f)
            if spec.spread:
                item_hint = get_args(hint)[1]
                merged = dict(start if start is not _NOTHING else {})
                for name, bound in spec.spread().items():
                    if name in data:
                        item_spec = dataclasses.replace(spec, bound=bound, spread=None)
                        merged[name] = self.value(
                            item_hint, data[name], _join(path, name), item_spec
                        )
                values[f.name] = merged
            elif f.name in data and f.name not in without:
                sibling = values.get(spec.base) if spec.base else None
                values[f.name] = self.value(hint, data[f.name], where, spec, start, sibling)
            elif f.name in given or (start is not _NOTHING and spec.derive is None):
                values[f.name] = start
            elif spec.derive is not None:
                derived.append(f)
            else:
                raise self.fail(where, None, f"a value is required ({_expected(hint, spec)})")
        for f in derived:
            values[f.name] = _spec(f).derive(values)  # type: ignore[misc]
        try:
            return cls(**values)
        except RuleError as exc:
            value = data.get(exc.key)
            raise self.fail(_join(path, exc.key), value, exc.detail) from None

    def value(
        self,
        hint: Any,
        value: Any,
        path: str,
        spec: _Spec = _NO_SPEC,
        base: Any = _NOTHING,
        sibling: Any = None,
    ) -> Any:
        hint, optional = _optional(hint)
        if optional and (value is None or (isinstance(value, EnvText) and not value)):
            return None
        result = self.typed(hint, value, path, spec, base, sibling)
        problem = spec.check(result) if spec.check else None
        if problem:
            raise self.fail(path, value, problem)
        return result

    def typed(  # one branch per supported type, in one place on purpose
        self, hint: Any, value: Any, path: str, spec: _Spec, base: Any, sibling: Any
    ) -> Any:
        origin, args = get_origin(hint), get_args(hint)
        if hint is Any:
            return value
        if dataclasses.is_dataclass(hint):
            start = None if base is _NOTHING else base
            return self.dataclass(typing.cast(type, hint), value, path, start, spec.without)
        if origin in (dict, Mapping):
            return self.entries(args[1], value, path, spec, sibling)
        if value is None:
            raise self.fail(path, value, f"a value is required ({_expected(hint, spec)})")
        text = isinstance(value, EnvText)
        if origin is tuple:
            if not isinstance(value, list | tuple):
                raise self.wrong(hint, value, path, spec)
            variadic = len(args) == 2 and args[1] is Ellipsis
            if not variadic and len(value) != len(args):
                raise self.wrong(hint, value, path, spec)
            kinds = [args[0]] * len(value) if variadic else list(args)
            items = [
                self.value(kind, item, f"{path}[{i}]", dataclasses.replace(spec, check=None))
                for i, (kind, item) in enumerate(zip(kinds, value, strict=True))
            ]
            return tuple(items)
        if origin is Literal:
            if value not in args:
                raise self.wrong(hint, value, path, spec)
            return args[args.index(value)]  # the literal itself, not the environment's text
        if hint is bool:
            if text and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
                return value.lower() in {"1", "true", "yes"}
            if not isinstance(value, bool):
                raise self.wrong(hint, value, path, spec)
            return value
        if hint in (int, float):
            number: Any = value
            if text:
                try:
                    number = hint(value)
                except ValueError:
                    raise self.wrong(hint, value, path, spec) from None
            ok = isinstance(number, int) if hint is int else isinstance(number, int | float)
            if not ok or isinstance(number, bool) or not math.isfinite(number):
                raise self.wrong(hint, value, path, spec)
            if spec.bound and not spec.bound.holds(number):
                raise self.wrong(hint, value, path, spec)
            return hint(number)
        if isinstance(value, hint) and hint is not str:
            return value  # e.g. a Secret already read from its file
        if not isinstance(value, str) or not value:
            raise self.wrong(hint, value, path, spec)
        allowed = spec.allowed()
        if allowed is not None and value not in allowed:
            raise self.wrong(hint, value, path, spec)
        return str(value) if hint is str else hint(str(value))

    def entries(
        self, item_hint: Any, value: Any, path: str, spec: _Spec, sibling: Any
    ) -> dict[str, Any]:
        if isinstance(value, EnvText):  # NAME=VALUE,NAME=VALUE
            pairs = [item.partition("=") for item in value.split(",") if item.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise self.fail(path, value, f"expected NAME=VALUE[,NAME=VALUE...], got {value!r}")
            value = {n.strip(): EnvText(v.strip(), value.variable) for n, _, v in pairs}
        data = self.mapping(value, path)
        start = _NOTHING if sibling is None else sibling
        inner = dataclasses.replace(spec, base=None, check=None)
        return {
            name: self.value(item_hint, item, _join(path, name), inner, start)
            for name, item in data.items()
        }
