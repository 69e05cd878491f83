"""Transcripts get the token ids transformers' own tokenizer gives, with or without transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from mesm.data.media.text import TextTokenizer
from mesm.resources import default_text_model

TEXTS = [
    "I am so happy today",
    "",
    "Über-long, ACCENTED words: naïve café — 東京!",
    "word " * 300,
    "a\tb\nc  d",
    "[SEP] [CLS] [PAD] hello [MASK]",
    "don't   stop 😀",
]


@pytest.mark.parametrize("max_length", [2, 5, 100])
def test_token_ids_equal_transformers_tokenizer(max_length):
    ours = TextTokenizer(max_length=max_length)
    assert ours._rust is not None  # the default model takes the direct path
    theirs = AutoTokenizer.from_pretrained(default_text_model(), local_files_only=True)
    want = theirs(TEXTS, truncation=True, max_length=max_length)["input_ids"]
    assert ours.encode(TEXTS) == [list(ids) for ids in want]
    assert ours.pad_id == theirs.pad_token_id == 0


def test_a_tokenizer_whose_settings_disagree_with_its_file_goes_through_transformers(tmp_path):
    folder = tmp_path / "cased"
    shutil.copytree(default_text_model(), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    ours = TextTokenizer(str(folder))
    assert ours._rust is None
    theirs = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    want = theirs(TEXTS, truncation=True, max_length=100)["input_ids"]
    assert ours.encode(TEXTS) == [list(ids) for ids in want]


def test_the_default_tokenizer_does_not_import_transformers():
    code = (
        "import sys; from mesm.data.media.text import TextTokenizer; "
        "TextTokenizer().encode(['hello']); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
