"""The value types a recipe config key can have: each parses one value and says in words what it allows.

`config.SCHEMA` gives every key one of these; `config.validate` runs them all before a run writes anything, so a
wrong value is an error naming the key, the value and what is allowed, never a TypeError deep inside timm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional


class InvalidValue(ValueError):
    """A value outside its type or range (config.validate turns it into a ConfigError naming the key)."""


@dataclass(frozen=True)
class Null:
    """`null`, with what it means for this key."""
    meaning: str

    @property
    def allowed(self) -> str:
        return f'null ({self.meaning})'

    def parse(self, value: Any) -> None:
        if value is not None:
            raise InvalidValue(self.allowed)
        return None


@dataclass(frozen=True)
class Bool:
    allowed = 'true or false'

    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi] (either bound optional)."""
    lo: Optional[int] = None
    hi: Optional[int] = None

    @property
    def allowed(self) -> str:
        return 'an integer' + _range_words(self.lo, self.hi, lo_open=False)

    def parse(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, self.lo, self.hi, False):
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class Float:
    """A finite number in [lo, hi], or (lo, hi] with `lo_open`; integers are taken as floats."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False

    @property
    def allowed(self) -> str:
        return 'a number' + _range_words(self.lo, self.hi, self.lo_open)

    def parse(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValue(self.allowed)
        value = float(value)
        if not math.isfinite(value) or not _in_range(value, self.lo, self.hi, self.lo_open):
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class Text:
    """A non-empty string (a name or a path)."""
    what: str = 'a non-empty string'

    @property
    def allowed(self) -> str:
        return self.what

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class Choice:
    """One of fixed values (compared with their type: `1` is not `true`)."""
    options: tuple

    @property
    def allowed(self) -> str:
        words = [_yaml_word(o) for o in self.options]
        return words[0] if len(words) == 1 else 'one of ' + ', '.join(words)

    def parse(self, value: Any) -> Any:
        if not any(type(value) is type(o) and value == o for o in self.options):
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class ListOf:
    """A YAML list whose items are all `item`; `length` fixes how many, `min_length` how few, `distinct` forbids
    repeats."""
    item: Any
    length: Optional[int] = None
    example: str = ''
    min_length: int = 0
    distinct: bool = False

    @property
    def allowed(self) -> str:
        count = f'{self.length} ' if self.length else f'at least {self.min_length} ' if self.min_length else ''
        distinct = 'distinct ' if self.distinct else ''
        example = f', e.g. {self.example}' if self.example else ''
        return f'a list of {count}{distinct}items, each {self.item.allowed}{example}'

    def parse(self, value: Any) -> list:
        if (not isinstance(value, list) or (self.length is not None and len(value) != self.length)
                or len(value) < self.min_length):
            raise InvalidValue(self.allowed)
        try:
            items = [self.item.parse(v) for v in value]
        except InvalidValue:
            raise InvalidValue(self.allowed) from None
        if self.distinct and len(set(map(repr, items))) < len(items):
            raise InvalidValue(self.allowed)
        return items


@dataclass(frozen=True)
class Mapping:
    """A mapping passed through to timm as keyword arguments (its keys are timm's, not ours)."""
    allowed = 'a mapping of keyword arguments, e.g. {drop_rate: 0.1}'

    def parse(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise InvalidValue(self.allowed)
        return value


@dataclass(frozen=True)
class Either:
    """The first of several types that accepts the value."""
    options: tuple

    @property
    def allowed(self) -> str:
        return ' or '.join(o.allowed for o in self.options)

    def parse(self, value: Any) -> Any:
        for option in self.options:
            try:
                return option.parse(value)
            except InvalidValue:
                pass
        raise InvalidValue(self.allowed)


def either(*options) -> Either:
    return Either(tuple(options))


def choice(*options) -> Choice:
    return Choice(tuple(options))


def inferred(default: Any):
    """The type of a key declared without a SCHEMA entry, from its default (None: no type can be inferred)."""
    for kind, spec in ((bool, Bool()), (int, Int()), (float, Float()), (str, Text()), (dict, Mapping())):
        if type(default) is kind:
            return spec
    return None


def _in_range(value, lo, hi, lo_open: bool) -> bool:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    return hi is None or value <= hi


def _range_words(lo, hi, lo_open: bool) -> str:
    if lo is not None and hi is not None:
        return f' in {"(" if lo_open else "["}{lo}, {hi}]'
    if lo is not None:
        return f' {">" if lo_open else ">="} {lo}'
    if hi is not None:
        return f' <= {hi}'
    return ''


def _yaml_word(value: Any) -> str:
    if value is None:
        return 'null'
    return str(value).lower() if isinstance(value, bool) else str(value)
