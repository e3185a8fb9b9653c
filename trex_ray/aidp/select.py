"""Selection and mixing: which rows, and how many of each kind.

- `sample`: n rows or a fraction, uniformly at random (seeded).
- `stratified_sample`: the same per output label, so the label distribution is kept.
- `label_balance`: cap every label at n rows (or at the rarest label's count).
- `mix`: a weighted mixture of the current rows and other sources, to a total size.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trex_ray.aidp.base import OpArgs, OpContext, shuffle_partitions
from trex_ray.aidp.rows import COLUMNS


class SampleArgs(OpArgs):
    n: int | None = Field(None, ge=1, description="Keep at most n rows (uniformly at random).")
    fraction: float | None = Field(None, gt=0, le=1, description="Keep this fraction of rows (uniformly at random).")
    seed: int = Field(0, description="Sampling seed.")

    @model_validator(mode="after")
    def _one_of(self) -> "SampleArgs":
        if (self.n is None) == (self.fraction is None):
            raise ValueError("give exactly one of n or fraction")
        return self


def sample(ds, a: SampleArgs, ctx: OpContext):
    ds = ds.random_shuffle(seed=a.seed)
    if a.n is not None:
        return ds.limit(a.n)
    ds = ds.materialize()  # counted and then cut: run the upstream ops once, not twice
    return ds.limit(max(1, int(round(ds.count() * a.fraction))))


def _per_group(ds, seed: int, take):
    """Apply `take(group_df, seed) -> df` to each output label's rows, deterministically."""

    def run(g):
        g = g.sort_values(["input"], kind="stable")
        return take(g, seed)

    return ds.groupby("output", num_partitions=shuffle_partitions()).map_groups(run, batch_format="pandas")


class StratifiedSampleArgs(OpArgs):
    fraction: float = Field(gt=0, le=1, description="Fraction of each label's rows to keep.")
    seed: int = Field(0, description="Sampling seed.")


def stratified_sample(ds, a: StratifiedSampleArgs, ctx: OpContext):
    return _per_group(ds, a.seed, lambda g, s: g.sample(n=max(1, int(round(len(g) * a.fraction))), random_state=s))


class LabelBalanceArgs(OpArgs):
    max_per_label: int | None = Field(None, ge=1, description="Cap on rows per output label; None caps at the "
                                      "rarest label's count.")
    seed: int = Field(0, description="Seed for which rows are kept.")


def label_balance(ds, a: LabelBalanceArgs, ctx: OpContext):
    cap = a.max_per_label
    if cap is None:
        ds = ds.materialize()  # counted and then grouped: run the upstream ops once, not twice
        counts = ds.groupby("output", num_partitions=shuffle_partitions()).count().take_all()
        cap = min(r["count()"] for r in counts) if counts else 1
    return _per_group(ds, a.seed, lambda g, s: g.sample(n=min(len(g), cap), random_state=s))


class MixSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="Local file (.jsonl/.csv/.tsv/.parquet).")
    hf: str | None = Field(None, description="HF dataset id or local dataset directory.")
    hf_split: str = "train"
    input_field: str | None = None
    output_field: str | None = None
    weight: float = Field(1.0, gt=0, description="Relative share of the mixture.")
    name: str | None = Field(None, description="Where the source was found (e.g. a catalogue entry), recorded with "
                             "the plan.")
    license: str | None = Field(None, description="The source's license as its card or README states it, recorded "
                                "with the plan.")


class MixArgs(OpArgs):
    sources: list[MixSource] = Field(min_length=1, description="Other sources to mix with the current rows.")
    weight: float = Field(1.0, gt=0, description="Relative share of the current rows.")
    total: int = Field(ge=1, description="Rows in the mixture (each part is capped by what it has).")
    seed: int = Field(0, description="Sampling seed.")


def mix(ds, a: MixArgs, ctx: OpContext):
    from trex_ray.aidp.sources import LoadArgs, load

    total_w = a.weight + sum(src.weight for src in a.sources)
    parts = [(ds, a.weight)]
    for i, src in enumerate(a.sources, 1):
        la = LoadArgs(path=src.path, hf=src.hf, hf_split=src.hf_split, input_field=src.input_field,
                      output_field=src.output_field)
        rows = max(1, int(round(a.total * src.weight / total_w)))
        parts.append((load(None, la, ctx, sample=(rows, a.seed + i)), src.weight))
    out = None
    for i, (part, w) in enumerate(parts):
        k = max(1, int(round(a.total * w / total_w)))
        part = part.select_columns(COLUMNS).random_shuffle(seed=a.seed + i).limit(k)
        out = part if out is None else out.union(part)
    return out
