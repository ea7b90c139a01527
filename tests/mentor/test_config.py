"""datasets.yaml: the repo's own file is valid; a bad file names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentor.cli import main
from mentor.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
GOOD = "sources:\n  - name: a\n    kind: folder\n    path: media\n"


def test_repo_config_is_valid():
    cfg = load_config(REPO / "datasets.yaml")
    assert cfg.sources[0].kind == "folder"
    assert cfg.resolve(cfg.output) == REPO / "out" / "demo"


def test_defaults_fill_missing_sections():
    cfg = parse_config(GOOD)
    assert cfg.video.fps == 25 and cfg.store.shard_bytes == 1_000_000_000
    assert cfg.annotate.asr.whisper_model is None


@pytest.mark.parametrize("text, line, key, hint", [
    (GOOD + "video:\n  fps: fast\n", 6, "video.fps", "valid number"),
    (GOOD + "filters:\n  min_face_pxx: 3\n", 6, "filters.min_face_pxx", "allowed here: sample_fps"),
    ("sources:\n  - name: a\n    kind: web\n", 3, "sources.0.kind", "'folder', 'files', 'urls' or 'pages'"),
    ("sources:\n  - {name: a, kind: urls}\n", 2, "sources.0", "needs a non-empty 'items'"),
    (GOOD + "clips: {min_seconds: 5, max_seconds: 2}\n", 5, "clips", "max_seconds (2.0) < min_seconds"),
    (GOOD + "split:\n  shares: {train: 0.5}\n", 5, "split", "add up to 1.0"),
    (GOOD + "video:\n  size: 10\n", 6, "video.size", "greater than or equal to 64"),
])
def test_bad_config_names_file_line_key(text, line, key, hint):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "my.yaml")
    msg = str(e.value)
    assert f"my.yaml:{line}: {key}:" in msg and hint in msg


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("sources: [", "x.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("- 1\n- 2\n", "x.yaml")


def test_validate_config_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "video:\n  fps: -3\n")
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: video.fps:" in err and "greater than 0" in err


def test_weight_paths_resolve_against_the_config_folder(tmp_path):
    cfg = parse_config(GOOD + "annotate:\n  asr: {whisper_model: small}\n  diarization: {pyannote_dir: models/pya}\n"
                       "  smplx: {model_dir: /abs/smplx}\n", "x.yaml", str(tmp_path))
    r = cfg.with_resolved_paths()
    assert r.annotate.diarization.pyannote_dir == str(tmp_path / "models" / "pya")
    assert r.annotate.smplx.model_dir == "/abs/smplx"
    assert r.annotate.asr.whisper_model == "small"  # a model name, not a path
    assert cfg.annotate.diarization.pyannote_dir == "models/pya"  # the original is untouched


@pytest.mark.parametrize("text, line, key, hint", [
    (GOOD + "video: {preset: bogus}\n", 5, "video.preset", "'veryfast'"),
    (GOOD + "annotate:\n  asr: {device: gpu}\n", 6, "annotate.asr.device", "auto, cpu, cuda, cuda:N"),
    (GOOD + "video: {size: 511}\n", 5, "video.size", "multiple of 2"),
    ("sources: []\n", 1, "sources", "at least 1"),
    (GOOD + "  - {name: a, kind: urls, items: [x]}\n", 1, "sources", "'a' is used by items 0 and 1"),
    (GOOD + "video: !custom {fps: 3}\n", 5, "video", "YAML tag !custom is not allowed"),
    (GOOD + "x: " + "[" * 100 + "]" * 100 + "\n", 5, "x.0.0", "nested more than 64 levels"),
])
def test_values_a_later_stage_needs_are_checked(text, line, key, hint):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "my.yaml")
    msg = str(e.value)
    assert f"my.yaml:{line}: {key}" in msg and hint in msg, msg


def test_alias_bomb_is_refused_at_once_and_anchors_still_work():
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="aliases are expanded"):
        parse_config(bomb + GOOD, "my.yaml")
    assert time.monotonic() - t0 < 5
    cfg = parse_config("sources:\n  - &s {name: a, kind: urls, items: [u]}\n  - {<<: *s, name: b}\n")
    assert [s.name for s in cfg.sources] == ["a", "b"] and cfg.sources[1].items == ["u"]


def test_non_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"{p}:5: byte 0xe9 at column 6 is not UTF-8"):
        load_config(p)
