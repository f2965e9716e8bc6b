import pytest

from asrkit.data.tokenizer import Tokenizer, train_tokenizer
from asrkit.errors import DataError

TEXTS = ["R U B O U T", "ONE TWO THREE", "ENTER FIVE SIX", "YES", "NO", "GO STOP HELP", "E R A S E"] * 20


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("lang")
    train_tokenizer(TEXTS, d, vocab_size=40, model_type="unigram")
    return Tokenizer.load(d)


def test_round_trip(tokenizer):
    texts = ["ENTER FIVE SIX", "R U B O U T", "NO YES GO"]
    ids = tokenizer.encode(texts)
    assert all(0 not in seq for seq in ids), "blank must never be produced by encoding"
    assert tokenizer.decode(ids) == texts


def test_special_ids_and_tokens_txt(tokenizer, tmp_path):
    assert tokenizer.blank_id == 0
    assert tokenizer.symbols[:3] == ["<blk>", "<sos/eos>", "<unk>"]
    tokenizer.write_tokens_txt(tmp_path / "tokens.txt")
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert lines[0] == "<blk> 0" and len(lines) == tokenizer.vocab_size
    assert tokenizer.decode([[0, *tokenizer.encode(["YES"])[0], 0]]) == ["YES"]


def test_unknown_characters(tokenizer):
    assert tokenizer.find_unknown("ONE TWO") == []
    assert set(tokenizer.find_unknown("ZQ ONE")) == {"Z", "Q"}


def test_bytes_round_trip(tokenizer):
    again = Tokenizer.from_bytes(tokenizer.to_bytes())
    assert again.encode(["GO STOP"]) == tokenizer.encode(["GO STOP"])


def test_bpe_model_type(tmp_path):
    train_tokenizer(TEXTS, tmp_path, vocab_size=30, model_type="bpe")
    tok = Tokenizer.load(tmp_path / "bpe.model")
    assert tok.decode(tok.encode(["HELP"])) == ["HELP"]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Tokenizer.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="bad.model"):
        Tokenizer.load(tmp_path / "bad.model")
    with pytest.raises(DataError, match="no non-empty transcripts"):
        train_tokenizer(["", "  "], tmp_path / "x")
