"""Recipes: a data preparation as validated data, an ordered list of AIDP ops (`load` first, `format`
last), each op's arguments checked against its registered model. Plans carry one; by hand it is YAML:

    ops:
      - load: {split: train}
      - dedup_exact: {}
      - format: {template: "Q: {input}"}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trex_ray.aidp.ops import OPS, FormatArgs


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpCall(Strict):
    """One step of a recipe: an op name from the registry and its validated arguments."""

    op: str
    args: dict[str, Any] = Field(default_factory=dict)


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


class Recipe(Strict):
    ops: list[OpCall] = Field(description="Ordered data operators: `load` first, `format` last.")

    @field_validator("ops", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("ops must be a list of `- op_name: {args}` entries")
        out = []
        for i, item in enumerate(value):
            if isinstance(item, OpCall):
                out.append(item)
                continue
            if isinstance(item, dict) and set(item) <= {"op", "args"} and "op" in item:
                name, args = item["op"], item.get("args") or {}
            elif isinstance(item, dict) and len(item) == 1:
                name, args = next(iter(item.items()))
                args = args or {}
            else:
                raise ValueError(f"ops[{i}] must be a mapping with exactly one op name, got {item!r}")
            if name not in OPS:
                raise ValueError(f"ops[{i}]: unknown op {name!r}; known ops: {', '.join(sorted(OPS))}")
            if not isinstance(args, dict):
                raise ValueError(f"ops[{i}] ({name}): arguments must be a mapping, got {args!r}")
            try:
                parsed = OPS[name].args.model_validate(args)
            except ValidationError as e:
                raise ValueError(f"ops[{i}] ({name}): {_validation_message(e)}") from None
            out.append(OpCall(op=name, args=parsed.model_dump(exclude_defaults=True)))
        return out

    @model_validator(mode="after")
    def _shape(self) -> "Recipe":
        names = [o.op for o in self.ops]
        if not names or names[0] != "load":
            raise ValueError("the first op must be `load`")
        if names.count("format") != 1 or names[-1] != "format":
            raise ValueError("a recipe needs exactly one `format` op, as its last op (it defines the prompt used in "
                             "training and eval)")
        if names.count("load") != 1:
            raise ValueError("a recipe has one `load` op; use `mix` to add more sources")
        return self

    def typed(self) -> list[tuple[str, Any]]:
        """(name, validated args model) pairs, in order."""
        return [(o.op, OPS[o.op].args.model_validate(o.args)) for o in self.ops]

    @property
    def prompt(self) -> FormatArgs:
        return next(a for n, a in self.typed() if n == "format")

    def to_yaml_list(self) -> list[dict]:
        return [{o.op: dict(o.args)} for o in self.ops]
