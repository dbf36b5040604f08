from __future__ import annotations

from maxsim.evaluation.bm25 import BM25Retriever, tokenize


def test_tokenize_scripts():
    assert tokenize("東京都") == ["東京", "京都"]
    assert tokenize("日") == ["日"]
    assert tokenize("สวัสดี")[:2] == ["สว", "วั"] and len(tokenize("สวัสดี")) == 5
    assert tokenize("iPhoneは便利", None) == ["iphone", "は便", "便利"]  # script change splits the run
    assert tokenize("Привет, мир!") == ["привет", "мир"]
    assert tokenize("the dogs are running", "en") == ["the", "dog", "are", "run"]
    assert tokenize("ＡＢＣ１２３") == ["abc123"]  # NFKC folds full-width forms
    assert tokenize("...  ") == []
    assert tokenize("한국어를 배운다") == ["한국", "국어", "어를", "배운", "운다"]  # Hangul: bigrams within words


def test_bm25_ranks_matching_documents_first():
    bm = BM25Retriever(language="en")
    bm.index(["a", "b", "c"], ["cats sleep all day", "dogs bark at night", "birds sing in the morning"])
    hits = bm.search(["barking dog", "zzz unknown"], k=3)
    assert next(iter(hits[0])) == "b"
    assert len(hits[1]) == 3 and set(hits[1].values()) == {0.0}  # no known term: every score 0


def test_bm25_chinese_without_spaces():
    bm = BM25Retriever(language="zh")
    bm.index(["z1", "z2", "z3"], ["東京都是日本的首都", "北京是中国的首都", "今天天气很好"])
    hits = bm.search(["中国首都", "天气"], k=2)
    assert next(iter(hits[0])) == "z2"
    assert next(iter(hits[1])) == "z3"
