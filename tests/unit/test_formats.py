"""Bringing your own data: row formats (fields, alpaca, sharegpt, chat) in JSONL, JSON, CSV, parquet and HF
datasets folders, format detection, rows dropped by reason, val/test split off train, refused leaks between
splits, non-UTF-8 files, the nested budget, your own metric, and command-line flags with dashes."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections import Counter

import pytest
import yaml

from trex_ray import formats
from trex_ray.cli import _add_overrides, _overrides, main
from trex_ray.config import build, load_config, load_yaml
from trex_ray.errors import ConfigError
from trex_ray.metrics import get_metric, score
from trex_ray.task import Task

from .helpers import qa_rows, write_jsonl

SPLITS = ("train", "val", "test")


def _alpaca(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Add one to {i}", "input": "" if i % 2 else f"(item {i})", "output": str(i + 1)}
            for i in range(start, start + n)]


def _disjoint(tmp_path, rows_of, n=(40, 10, 10)) -> dict:
    """train/val/test JSONL files of `rows_of(count, start)` with disjoint inputs."""
    starts = (0, 1000, 2000)
    return {s: write_jsonl(tmp_path / f"{s}.jsonl", rows_of(k, st)) for s, k, st in zip(SPLITS, n, starts)}


# -- formats --------------------------------------------------------------------------------------
def test_alpaca_rows_join_instruction_and_input_and_are_detected(tmp_path, caplog):
    paths = _disjoint(tmp_path, _alpaca)
    with caplog.at_level("INFO", logger="trex_ray"):
        t = Task.from_jsonl("a", **paths)
    rows = {r["output"]: r["input"] for r in t.rows("train")}
    assert rows["1"] == "Add one to 0\n\n(item 0)"  # instruction, blank line, input
    assert rows["2"] == "Add one to 1"  # an empty input adds nothing
    assert t.profile()["format"] == "alpaca" and t.profile()["dropped"] == {}
    assert "train: alpaca rows (format detected from the first rows" in caplog.text


def test_alpaca_row_with_a_list_field_is_dropped_with_its_reason_not_made_text(tmp_path):
    rows = _alpaca(30) + [{"instruction": ["a", "list"], "output": "x"}, {"instruction": "ok", "output": None},
                          {"instruction": "no output"}, {"instruction": "dict", "input": {"k": 1}, "output": "y"}]
    paths = _disjoint(tmp_path, _alpaca)
    paths["train"] = write_jsonl(tmp_path / "train.jsonl", rows)
    t = Task.from_jsonl("a", format="alpaca", **paths)
    assert len(t.rows("train")) == 30
    assert t.profile()["dropped"] == {"train": {"'instruction' is a list, not text": 1, "'output' is null": 1,
                                                "missing field 'output'": 1, "'input' is a mapping, not text": 1}}
    assert not any("[" in r["input"] or "{" in r["input"] for r in t.rows("train"))


def _sharegpt(n: int, start: int = 0, system: bool = False) -> list[dict]:
    out = []
    for i in range(start, start + n):
        conv = [{"from": "human", "value": f"double {i}"}, {"from": "gpt", "value": str(2 * i)}]
        out.append({"conversations": ([{"from": "system", "value": "You double numbers."}] if system else []) + conv})
    return out


def test_sharegpt_conversations_are_rows_with_their_earlier_turns_and_system_kept(tmp_path):
    multi = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                               {"from": "human", "value": "and?"}, {"from": "gpt", "value": "bye"}]}
    no_answer = {"conversations": [{"from": "human", "value": "hi"}]}
    ends_with_user = {"conversations": [*multi["conversations"], {"from": "human", "value": "well?"}]}
    twice = {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                               {"from": "gpt", "value": "c"}]}
    odd_role = {"conversations": [{"from": "tool", "value": "x"}, {"from": "gpt", "value": "y"}]}
    train = _sharegpt(20) + _sharegpt(5, 500, system=True) + [multi, no_answer, ends_with_user, twice, odd_role]
    paths = _disjoint(tmp_path, _sharegpt)
    paths["train"] = write_jsonl(tmp_path / "train.jsonl", train)
    t = Task.from_jsonl("s", **paths)  # detected
    assert t.profile()["format"] == "sharegpt"
    rows = {r["input"]: r for r in t.rows("train")}
    assert rows["double 7"]["output"] == "14" and "chat" not in rows["double 7"]
    assert len(t.rows("train")) == 26
    p = t.profile()
    assert p["dropped"]["train"] == {"no assistant answer": 2, "two user turns in a row": 1,
                                     "turn role 'tool' (not supported)": 1}
    # the last exchange is the row; the turns before it and a system turn are its conversation
    assert rows["and?"]["output"] == "bye"
    assert json.loads(rows["and?"]["chat"]) == {"system": None, "history": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert json.loads(rows["double 500"]["chat"]) == {"system": "You double numbers.", "history": []}
    assert p["conversations"] == {"rows_with_earlier_turns": 1, "max_earlier_turns": 2, "rows_with_system_prompt": 5}


def _chat(n: int, start: int = 0) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"echo {i}"},
                          {"role": "assistant", "content": f"{i}"}]} for i in range(start, start + n)]


def test_chat_messages_text_parts_and_multi_turn_kept_images_dropped(tmp_path):
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "echo "}, {"type": "text",
                                                                                           "text": "parts"}]},
                          {"role": "assistant", "content": "parts"}]}
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "a cat"}]}
    multi = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    paths = _disjoint(tmp_path, _chat)
    paths["train"] = write_jsonl(tmp_path / "train.jsonl", _chat(30) + [parts, image, multi])
    t = Task.from_jsonl("c", **paths)
    assert t.profile()["format"] == "chat"
    got = {r["input"]: r["output"] for r in t.rows("train")}
    assert got["echo 3"] == "3" and got["echo parts"] == "parts" and got["c"] == "d"
    assert t.profile()["dropped"]["train"] == {"message content that is not text (e.g. an image)": 1}


def test_fields_format_lists_dropped_numbers_written_missing_first_field_is_a_config_error(tmp_path):
    rows = qa_rows(20) + [{"question": ["a", "b"], "answer": "x"}, {"question": "n", "answer": 7},
                          {"question": "z", "answer": None}, {"question": "w"}]
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", rows),
             "val": write_jsonl(tmp_path / "val.jsonl", qa_rows(5, 100)),
             "test": write_jsonl(tmp_path / "test.jsonl", qa_rows(5, 200))}
    t = Task.from_jsonl("f", input_field="question", output_field="answer", **paths)
    assert {"input": "n", "output": "7"} in t.rows("train")
    assert t.profile()["dropped"] == {"train": {"'question' is a list, not text": 1, "'answer' is null": 1,
                                                "missing field 'answer'": 1}}
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("f", input_field="prompt", output_field="answer", **paths)
    assert e.value.field == "input_field" and "question" in e.value.problem


def test_a_split_whose_rows_are_all_dropped_says_why(tmp_path):
    paths = _disjoint(tmp_path, _alpaca)
    paths["val"] = write_jsonl(tmp_path / "val2.jsonl", [{"instruction": [1], "output": "x"}] * 3)
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("a", format="alpaca", **paths)
    assert e.value.field == "val" and "3 rows dropped: 'instruction' is a list, not text: 3" in e.value.problem


def test_an_explicit_format_or_named_fields_win_over_detection(tmp_path):
    paths = _disjoint(tmp_path, _alpaca)
    t = Task.from_jsonl("a", input_field="instruction", output_field="output", **paths)
    assert t.profile()["format"] == "fields" and t.rows("train")[0]["input"] == "Add one to 0"
    t = Task.from_jsonl("a", format="fields", **paths)  # alpaca's own input/output fields, as fields
    assert t.rows("train")[0] == {"input": "(item 0)", "output": "1"}


def test_csv_tsv_json_array_and_parquet_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"q{i}", "answer": f"00{i}"} for i in range(12)]
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("question,answer\n" + "".join(f"\"{r['question']}, quoted\",{r['answer']}\n" for r in rows))
    tsv = tmp_path / "val.tsv"
    tsv.write_text("question\tanswer\n" + "".join(f"v{i}\t{i}\n" for i in range(4)))
    arr = tmp_path / "test.json"
    arr.write_text(json.dumps([{"question": f"t{i}", "answer": i} for i in range(4)], indent=1))
    t = Task.from_jsonl("c", train=str(csv_path), val=str(tsv), test=str(arr), input_field="question",
                        output_field="answer")
    assert t.rows("train")[1] == {"input": "q1, quoted", "output": "001"}  # CSV text stays text: 001, not 1
    assert t.rows("val")[2] == {"input": "v2", "output": "2"} and t.rows("test")[3] == {"input": "t3", "output": "3"}
    pq.write_table(pa.Table.from_pylist([{"question": f"p{i}", "answer": "yes" if i % 2 else "no",
                                          "tags": ["a"]} for i in range(10)]), tmp_path / "train.parquet")
    t = Task.from_jsonl("p", train=str(tmp_path / "train.parquet"), val=str(tsv), test=str(arr),
                        input_field="question", output_field="answer")
    assert t.rows("train")[3] == {"input": "p3", "output": "yes"}
    with pytest.raises(ConfigError) as e:  # every row's answer a list: nothing left, and the reason said
        Task.from_jsonl("p", train=str(tmp_path / "train.parquet"), val=str(tsv), test=str(arr),
                        input_field="question", output_field="tags")
    assert e.value.field == "train" and "10 rows dropped: 'tags' is a list, not text: 10" in e.value.problem


def test_parquet_list_field_is_dropped_with_a_reason(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"q": f"p{i}", "a": "x" if i < 8 else None, "tags": ["a"] if i == 0 else None} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    val = write_jsonl(tmp_path / "v.jsonl", [{"q": "v", "a": "x"}])
    t = Task.from_jsonl("p", train=str(tmp_path / "d.parquet"), val=val, test=val, input_field="q", output_field="a")
    assert len(t.rows("train")) == 8 and t.profile()["dropped"] == {"train": {"'a' is null": 2}}


def test_unsupported_file_type_is_a_config_error(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("hello\n")
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("x", train=str(p))
    assert e.value.field == "train" and ".txt" in e.value.problem


# -- HF datasets ----------------------------------------------------------------------------------
def test_from_hf_reads_a_save_to_disk_folder_with_split_slices(tmp_path):
    import datasets

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"text": f"t{i}", "label": "pos" if i % 3 else "neg"} for i in range(50)]),
        "validation": datasets.Dataset.from_list([{"text": f"v{i}", "label": "pos"} for i in range(30)]),
        "test": datasets.Dataset.from_list([{"text": f"s{i}", "label": "neg"} for i in range(9)]),
    })
    dd.save_to_disk(str(tmp_path / "ds"))
    t = Task.from_hf(str(tmp_path / "ds"), splits={"train": "train", "val": "validation[:20]", "test": "test[2:]"},
                     input_field="text", output_field="label")
    assert t.name == "ds" and len(t.rows("train")) == 50
    assert [r["input"] for r in t.rows("val")] == [f"v{i}" for i in range(20)]
    assert [r["input"] for r in t.rows("test")] == [f"s{i}" for i in range(2, 9)]
    assert t.profile()["splits"]["val"].endswith("[validation[:20]]")
    # the data pipeline reads files: the rows are written as {input, output} JSON lines
    run = tmp_path / "run"
    run.mkdir()
    info = (t.write_data(str(run)), t.info())[1]
    assert info["train"] == str(run / "data" / "train.jsonl") and info["input_field"] == "input"
    first = json.loads(open(info["val"]).readline())
    assert first == {"input": "v0", "output": "pos"}
    assert t.to_config()["hf"] == str(tmp_path / "ds") and t.to_config()["val"] == "validation[:20]"
    # only train: val and test split off it; a split the folder lacks is named
    t2 = Task.from_hf(str(tmp_path / "ds"), input_field="text", output_field="label", name="only")
    assert [len(t2.rows(s)) for s in ("train", "val", "test")] == [40, 5, 5]
    with pytest.raises(ConfigError) as e:
        Task.from_hf(str(tmp_path / "ds"), splits={"train": "train", "val": "dev"}, input_field="text",
                     output_field="label")
    assert e.value.field == "val" and "validation" in e.value.problem


def test_hf_dataset_in_yaml_with_its_folder_relative_to_the_config(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"instruction": f"say {i}", "output": str(i)} for i in range(30)]).save_to_disk(
        str(tmp_path / "one"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: one\nhf: one\ntrain: train[:20]\ntest: train[20:]\ntrials: 1\nbase_model: tiny-random\n")
    task = build(load_config(str(cfg))).task
    task.check()
    assert task.hf == str(tmp_path / "one") and task.profile()["format"] == "alpaca"
    assert [len(task.rows(s)) for s in ("train", "val", "test")] == [18, 2, 10]


# -- val and test split off train -----------------------------------------------------------------
def test_split_off_train_sizes_determinism_and_given_splits_untouched(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(200))
    a, b = Task.from_jsonl("s", train, input_field="question", output_field="answer"), \
        Task.from_jsonl("s", train, input_field="question", output_field="answer")
    assert [len(a.rows(s)) for s in ("train", "val", "test")] == [160, 20, 20]
    assert all(a.rows(s) == b.rows(s) for s in ("train", "val", "test"))  # seeded: the same every time
    inputs = [{r["input"] for r in a.rows(s)} for s in ("train", "val", "test")]
    assert not (inputs[0] & inputs[1] or inputs[0] & inputs[2] or inputs[1] & inputs[2])
    assert sum(map(len, inputs)) == 200
    # a given val is used as it is; only test is split off
    val = write_jsonl(tmp_path / "val.jsonl", qa_rows(7, 900))
    t = Task.from_jsonl("s", train, val=val, input_field="question", output_field="answer")
    assert [r["input"] for r in t.rows("val")] == [f"what is item number {i}?" for i in range(900, 907)]
    assert [len(t.rows(s)) for s in ("train", "test")] == [180, 20]
    assert t._data["splits"]["split_off"]["splits"] == ["test"]


def test_split_sizes_have_a_floor_and_a_cap():
    assert [formats.split_size(n) for n in (3, 12, 100, 4000, 100_000)] == [1, 1, 10, 400, 500]


def test_split_off_is_stratified_by_output_and_keeps_duplicates_together(tmp_path):
    rows = [{"question": f"review {i}", "answer": "neg" if i % 10 < 2 else "pos"} for i in range(300)]
    rows += [{"question": "review 5", "answer": "pos"}] * 4  # a duplicated input stays on one side
    t = Task.from_jsonl("c", write_jsonl(tmp_path / "t.jsonl", rows), input_field="question", output_field="answer")
    assert t._data["splits"]["split_off"]["stratified_by_output"]
    for s in ("val", "test"):
        c = Counter(r["output"] for r in t.rows(s))
        assert c["neg"] == 6 and c["pos"] == 24, (s, c)  # 20% neg, as in train
    where = [s for s in ("train", "val", "test") if any(r["input"] == "review 5" for r in t.rows(s))]
    assert len(where) == 1


def test_too_few_rows_to_split_is_a_config_error(tmp_path):
    p = write_jsonl(tmp_path / "t.jsonl", qa_rows(2))
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("t", p, input_field="question", output_field="answer")
    assert e.value.field == "val" and "too few" in e.value.problem


def test_run_folder_gets_splits_json_and_the_rows_written_once(tmp_path):
    t = Task.from_jsonl("s", write_jsonl(tmp_path / "train.jsonl", qa_rows(50)), input_field="question",
                        output_field="answer")
    run = tmp_path / "run"
    run.mkdir()
    files = t.write_data(str(run))
    splits = json.load(open(run / "splits.json"))
    assert splits["val"] == {"rows": 5, "source": "split off train", "format": "fields"}
    assert splits["train"]["rows"] == 40 and splits["split_off"]["seed"] == 0
    assert sum(1 for _ in open(files["train"])) == 40
    mtime = os.stat(files["train"]).st_mtime_ns
    t2 = Task.from_jsonl("s", str(tmp_path / "train.jsonl"), input_field="question", output_field="answer")
    t2.write_data(str(run))  # a resumed run: the same rows, the file left alone (the dataset cache keys on mtime)
    assert os.stat(files["train"]).st_mtime_ns == mtime
    # plain JSONL files of the fields with nothing dropped are read where they are
    paths = _disjoint(tmp_path, lambda n, s: qa_rows(n, s))
    t3 = Task.from_jsonl("p", input_field="question", output_field="answer", **paths)
    assert t3.info()["train"] == os.path.abspath(paths["train"]) and t3.info()["input_field"] == "question"


def test_resume_reads_the_same_task_back_from_config_yaml(tmp_path):
    from trex_ray.runs import open_run_dir

    data = tmp_path / "data"
    data.mkdir()
    t = Task.from_jsonl("s", write_jsonl(data / "train.jsonl", _alpaca(40)), goal="add one")
    run = open_run_dir(str(tmp_path / "runs"), t, "r", False, {"trials": 1, "base_model": "tiny-random"})
    cfg = load_yaml(os.path.join(run, "config.yaml"))
    assert "val" not in cfg and cfg["format"] == "alpaca" and os.path.isabs(cfg["train"])  # as detected
    again = build(cfg).task
    assert all(again.rows(s) == t.rows(s) for s in ("train", "val", "test"))


# -- leaks between splits -------------------------------------------------------------------------
def test_val_that_is_the_train_file_is_refused_before_a_search(tmp_path):
    p = write_jsonl(tmp_path / "t.jsonl", qa_rows(40))
    t = Task.from_jsonl("t", p, val=p, test=write_jsonl(tmp_path / "x.jsonl", qa_rows(5, 500)),
                        input_field="question", output_field="answer")  # built (it can be profiled)
    with pytest.raises(ConfigError) as e:
        t.check()  # what a search does first
    assert e.value.field == "val" and "the val data is the train data" in e.value.problem and p in e.value.problem
    assert "allow_overlap" in e.value.fix
    Task.from_jsonl("t", p, val=p, test=str(tmp_path / "x.jsonl"), input_field="question", output_field="answer",
                    allow_overlap=True).check()


def test_overlap_over_five_percent_is_refused_naming_both_files_and_the_share(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(100))
    val = write_jsonl(tmp_path / "val.jsonl", qa_rows(2, 98) + qa_rows(18, 500))  # 2 of 20 = 10%
    test = write_jsonl(tmp_path / "test.jsonl", qa_rows(1, 99) + qa_rows(19, 700))  # 1 of 20 = 5%: accepted
    t = Task.from_jsonl("t", train, val=val, test=test, input_field="question", output_field="answer")
    with pytest.raises(ConfigError) as e:
        t.check()
    assert e.value.field == "val" and "2 of 20 rows (10%)" in e.value.problem
    assert train in e.value.problem and val in e.value.problem and "leave val out" in e.value.fix
    # test against val too (exact match after normalising whitespace and case)
    val_ok = write_jsonl(tmp_path / "val2.jsonl", qa_rows(20, 500))
    test_bad = write_jsonl(tmp_path / "test2.jsonl", [{"question": "  WHAT is item number 500? ", "answer": "x"}]
                           + qa_rows(3, 800))
    t = Task.from_jsonl("t", train, val=val_ok, test=test_bad, input_field="question", output_field="answer")
    with pytest.raises(ConfigError) as e:
        t.check()
    assert e.value.field == "test" and "1 of 4 rows (25%)" in e.value.problem
    Task.from_jsonl("t", train, val=val_ok, test=test_bad, input_field="question", output_field="answer",
                    allow_overlap=True).check()


def test_a_given_val_is_checked_against_the_test_split_off_train(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(100))
    val = write_jsonl(tmp_path / "val.jsonl", qa_rows(10))  # all 10 are train rows
    t = Task.from_jsonl("t", train, val=val, input_field="question", output_field="answer")
    with pytest.raises(ConfigError) as e:
        t.check()
    assert e.value.field == "val"


def test_cli_refuses_a_leak_in_one_line_before_any_folder(tmp_path, capsys):
    p = write_jsonl(tmp_path / "t.jsonl", _alpaca(40))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "train": "t.jsonl", "val": "t.jsonl", "trials": 1,
                                   "base_model": "tiny-random", "storage": str(tmp_path / "runs")}))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("trex-ray: error: val: the val data is the train data") and p in err[-1]
    assert any("alpaca rows (format detected" in line for line in err[:-1])  # the detection was printed
    assert not (tmp_path / "runs").exists()


# -- non-UTF-8 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".jsonl", ".csv"])
def test_non_utf8_file_is_one_config_error_naming_the_line(tmp_path, ext, capsys):
    good = json.dumps({"question": "q", "answer": "a"}) if ext == ".jsonl" else "q,a"
    head = b"" if ext == ".jsonl" else b"question,answer\n"
    bad = (json.dumps({"question": "caf_", "answer": "a"}).replace("_", "\xe9").encode("latin-1") if ext == ".jsonl"
           else "caf\xe9,a".encode("latin-1"))
    p = tmp_path / f"train{ext}"
    p.write_bytes(head + (good + "\n").encode() * 3 + bad + b"\n")
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("t", str(p), input_field="question", output_field="answer")
    line = 4 if ext == ".jsonl" else 5
    assert e.value.field == "train" and f"{p} line {line} is not UTF-8" in e.value.problem
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "train": str(p), "input_field": "question", "output_field": "answer",
                                   "trials": 1, "base_model": "tiny-random", "storage": str(tmp_path / "runs")}))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "not UTF-8" in err


# -- the config: a nested budget, flags with dashes -------------------------------------------------
def _cfg(data_files, **more) -> dict:
    return {"name": "t", "input_field": "question", "output_field": "answer", "base_model": "tiny-random",
            **data_files, **more}


def test_a_nested_budget_block_is_flattened(data_files):
    s = build(_cfg(data_files, budget={"trials": 4, "wall_clock_s": 600})).settings
    assert s.budget.trials == 4 and s.budget.wall_clock_s == 600
    # a flat key (a command-line override) wins over the block
    assert build(_cfg(data_files, budget={"trials": 4}, trials="8")).settings.budget.trials == 8
    with pytest.raises(ConfigError) as e:
        build(_cfg(data_files, budget={"trails": 4}))
    assert e.value.field == "budget.trails" and "wall_clock_s" in e.value.fix
    with pytest.raises(ConfigError) as e:
        build(_cfg(data_files, budget=4))
    assert e.value.field == "budget"


def test_flags_take_dashes_or_underscores(data_files, tmp_path, capsys):
    p = argparse.ArgumentParser()
    _add_overrides(p)
    a = p.parse_args(["--max-concurrent", "3", "--wall_clock_s", "60", "--input-field", "q", "--allow-overlap",
                      "true", "--labels", "a", "b"])
    assert _overrides(a) == {"max_concurrent": "3", "wall_clock_s": "60", "input_field": "q",
                             "allow_overlap": "true", "labels": ["a", "b"]}
    assert _overrides(p.parse_args(["--max_concurrent", "2"])) == {"max_concurrent": "2"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(data_files, trials=1, storage=str(tmp_path / "runs"))))
    assert main(["run", str(cfg), "--max-concurrent", "0"]) == 2
    assert capsys.readouterr().err.startswith("trex-ray: error: max_concurrent:")
    assert build({**_cfg(data_files, trials=1), "allow_overlap": "true"}).task.allow_overlap is True


@pytest.mark.parametrize("command", [["run", "x.yaml"], ["demo"], ["resume", "r"]])
def test_help_lists_every_key_with_both_spellings(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])  # a description holding "%" (5%) broke argparse's help once
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--max_concurrent MAX_CONCURRENT, --max-concurrent MAX_CONCURRENT" in out
    assert "--allow_overlap" in out and "5%" in out


# -- your own metric -------------------------------------------------------------------------------
METRIC_SRC = '''
def overlap(prediction, reference, row):
    """Share of the reference's words in the prediction; `row` is the record as in the data."""
    assert isinstance(row, dict) and "instruction" in row, row
    ref = set(reference.split())
    return len(ref & set(prediction.split())) / max(1, len(ref))


def out_of_range(prediction, reference, row):
    return 2.0


def two_args(prediction, reference):
    return 1.0
'''


@pytest.fixture
def metric_module(tmp_path, monkeypatch):
    """A module of metrics in the working directory (not otherwise on sys.path), as a user writes one."""
    name = f"my_metrics_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**6}"
    work = tmp_path / "work"
    work.mkdir()
    (work / f"{name}.py").write_text(METRIC_SRC)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    yield name
    sys.modules.pop(name, None)


def test_metric_module_function_from_the_working_directory_grades_with_the_row(tmp_path, metric_module):
    paths = _disjoint(tmp_path, _alpaca)
    t = Task.from_jsonl("m", metric=f"{metric_module}:overlap", **paths)
    t.check()
    row = t.rows("val")[0]
    assert row["context"]["instruction"].startswith("Add one to")  # the record itself
    s = score(t.metric, ["11", "nope"], ["11", "12"], contexts=[row["context"]] * 2)
    assert s.score == 0.5 and s.per_example == [1.0, 0.0]
    m = get_metric(t.metric)
    assert m.best == 1.0 and m.row
    # the task travels (to Ray workers, to config.yaml) with the metric by name
    again = pickle.loads(pickle.dumps(t))
    assert again.metric == f"{metric_module}:overlap" and again.info()["metric"] == t.metric


def test_metric_as_a_python_callable_is_kept_by_its_import_name(tmp_path, metric_module):
    import importlib

    sys.path.append(os.getcwd())
    fn = importlib.import_module(metric_module).overlap
    paths = _disjoint(tmp_path, _alpaca)
    t = Task.from_jsonl("m", metric=fn, **paths)
    assert t.metric == f"{metric_module}:overlap"
    assert Task.model_validate(t.to_config()).metric == t.metric  # what a resumed run reads back
    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("m", metric=lambda p, r, row: 1.0, **paths)
    assert e.value.field == "metric" and "lambda" in e.value.problem and "my_metrics.py" in e.value.fix

    def nested(p, r, row):
        return 1.0

    with pytest.raises(ConfigError) as e:
        Task.from_jsonl("m", metric=nested, **paths)
    assert e.value.field == "metric"


def test_metric_mistakes_are_config_errors(tmp_path, metric_module):
    paths = _disjoint(tmp_path, _alpaca)
    for metric, words in [(f"{metric_module}:out_of_range", "returned 2.0"),
                          (f"{metric_module}:two_args", "TypeError"),
                          (f"{metric_module}:missing", "has no 'missing'"),
                          ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
                          ("bleu", "unknown metric")]:
        with pytest.raises(ConfigError) as e:
            Task.from_jsonl("m", metric=metric, **paths).check()
        assert e.value.field == "metric" and words in e.value.problem, (metric, e.value)
    # built-in names still work
    assert Task.from_jsonl("m", metric="exact_match", **paths).metric == "exact_match"


def test_cli_metric_module_function_reaches_the_search_checks(tmp_path, metric_module, capsys):
    write_jsonl(tmp_path / "work" / "train.jsonl", _alpaca(40))
    cfg = tmp_path / "work" / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "train": "train.jsonl", "metric": f"{metric_module}:out_of_range",
                                   "trials": 1, "base_model": "tiny-random", "storage": str(tmp_path / "runs")}))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"trex-ray: error: metric: {metric_module}:out_of_range failed on the first val row")


def test_the_readme_example_of_your_own_data_runs_as_written(tmp_path, monkeypatch):
    """The README's my_metrics.py and task YAML, as written there, pass every check a search makes first."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    code = readme.split("```python\n# my_metrics.py\n", 1)[1].split("```", 1)[0]
    cfg = yaml.safe_load(readme.split("```yaml\n# trex-ray run task.yaml", 1)[1].split("\n", 1)[1].split("```", 1)[0])
    name = f"readme_metrics_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    rows = [{"question": f"my order {i} is late", "answer": f"sorry, order {i} ships today",
             "keywords": ["sorry", "ships"]} for i in range(30)]
    write_jsonl(tmp_path / cfg["train"], rows)
    cfg["metric"] = cfg["metric"].replace("my_metrics", name)
    run = build({**cfg, "base_model": "tiny-random"})
    assert run.settings.budget.trials == 8 and run.settings.budget.wall_clock_s == 3600
    run.task.check()
    assert score(run.task.metric, ["Sorry! It ships today"], ["x"], contexts=[rows[0]]).score == 1.0
    sys.modules.pop(name, None)


def test_a_jsonl_file_with_a_byte_order_mark_is_read_and_given_to_the_pipeline_without_it(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in qa_rows(30)).encode())
    paths = _disjoint(tmp_path, lambda n, s: qa_rows(n, s))
    t = Task.from_jsonl("b", train=str(p), val=paths["val"], test=paths["test"], input_field="question",
                        output_field="answer")
    assert t.rows("train")[0] == {"input": "what is item number 0?", "output": "00:00"}
    assert t.info()["train"] != str(p)  # rewritten: the pipeline's JSON lines reader would drop the first line
