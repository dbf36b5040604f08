"""Cross-lingual collections from parallel QA sets: questions in one language, passages in another.

Translated QA sets (SQuAD-es, SQuAD-it) keep the original's question ids, so a question id names
the same question in every translation and, through each set's qrels, the paragraph it was asked on
in that set's language. Pairing the queries of one set with the corpus and qrels of another gives
a retrieval set whose answer is the translation of the paragraph the question was asked on.
"""

from __future__ import annotations

from maxsim.evaluation.datasets import Collection, DatasetError


def query_language(collection: Collection) -> str:
    """The language of the collection's queries (its own language unless it is cross-lingual)."""
    return collection.meta.get("query_language") or collection.language


def is_cross_lingual(collection: Collection) -> bool:
    return query_language(collection) != collection.language


def restrict_to_queries(collection: Collection, query_ids: set[str]) -> Collection:
    """The collection with only ``query_ids`` (the corpus is kept whole)."""
    keep = [q for q in collection.qrels if q in query_ids]
    return Collection(
        collection.name,
        collection.corpus,
        {q: collection.queries[q] for q in keep},
        {q: collection.qrels[q] for q in keep},
        collection.languages,
        dict(collection.meta),
    )


def cross_lingual_collection(
    queries_from: Collection, documents_from: Collection, name: str | None = None
) -> Collection:
    """The questions of ``queries_from`` against the corpus and judgements of ``documents_from``.

    Only question ids judged in both sets are kept (each set may have dropped some questions);
    the corpus is ``documents_from``'s whole corpus, so the task is as hard as its monolingual run.
    Both sets must be single-language, in different languages, and share at least one question id.
    """
    if len(queries_from.languages) != 1 or len(documents_from.languages) != 1:
        raise DatasetError(
            f"cross-lingual pairing needs single-language sets, got {queries_from.name} ({queries_from.language}) "
            f"and {documents_from.name} ({documents_from.language})"
        )
    qlang, dlang = queries_from.languages[0], documents_from.languages[0]
    if qlang == dlang:
        raise DatasetError(f"{queries_from.name} and {documents_from.name} are both {qlang}: nothing cross-lingual")
    shared = [q for q in documents_from.qrels if q in queries_from.qrels]
    if not shared:
        raise DatasetError(f"{queries_from.name} and {documents_from.name} share no question id: not parallel sets")
    meta = {
        "query_language": qlang,
        "cross_lingual": {"queries": queries_from.name, "documents": documents_from.name},
    }
    return Collection(
        name or f"{documents_from.name}.q-{qlang}",
        dict(documents_from.corpus),
        {q: queries_from.queries[q] for q in shared},
        {q: dict(documents_from.qrels[q]) for q in shared},
        (dlang,),
        meta,
    )
