"""Typed request and response bodies. Request models reject unknown fields (422)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

EmbeddingType = Literal["float", "base64", "binary", "ubinary"]
InputType = Literal["query", "document"]

_STRICT = ConfigDict(extra="forbid", strict=True)


class TextInput(BaseModel):
    """An input given as an object: ``{"text": ..., "id"?: ...}``."""

    model_config = _STRICT
    text: StrictStr
    id: StrictStr | None = None


class MultiVectorRequest(BaseModel):
    """Body of ``POST /v1/multi-vector`` (and ``POST /v1/embeddings``)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    model: StrictStr = Field(description="model name, e.g. jina-colbert-v2")
    input: StrictStr | TextInput | list[StrictStr | TextInput] = Field(
        description="a text, a list of texts, an object {text, id?} or a list of them"
    )
    input_type: InputType = "document"
    embedding_type: EmbeddingType | list[EmbeddingType] = Field(
        default="float",
        validation_alias=AliasChoices("embedding_type", "encoding_type"),
        description="float, base64, binary, ubinary, or a list of them (alias: encoding_type)",
    )
    dimensions: Literal[64, 96, 128] = 128
    return_tokenized_input: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _one_type_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "embedding_type" in data and "encoding_type" in data:
            raise ValueError("send embedding_type or its older alias encoding_type, not both")
        return data

    @model_validator(mode="after")
    def _non_empty_types(self) -> MultiVectorRequest:
        if isinstance(self.embedding_type, list):
            if not self.embedding_type:
                raise ValueError("embedding_type: the list is empty")
            if len(set(self.embedding_type)) != len(self.embedding_type):
                raise ValueError("embedding_type: the list repeats a type")
        if isinstance(self.input, list) and not self.input:
            raise ValueError("input: the list is empty; send at least one text")
        return self


class EmbeddingItem(BaseModel):
    object: Literal["embeddings"] = "embeddings"
    index: int
    id: str | None = None
    embeddings: list[list[float]] | list[str] | list[list[int]] | dict[str, Any]
    tokenized_input: list[str] | None = None


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class MultiVectorResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    usage: Usage


class EmbeddingsRequest(MultiVectorRequest):
    """Body of ``POST /v1/embeddings``: the multi-vector body plus the fields of Jina's embeddings
    API that clients send. What each does is in docs/api.md."""

    input_type: InputType | None = None  # type: ignore[assignment]
    dimensions: StrictInt | None = Field(  # type: ignore[assignment]
        default=None, description="late-interaction models: 64, 96 or 128 (default 128); dense: 1..its size"
    )
    task: StrictStr | None = Field(
        default=None,
        description="retrieval.query, retrieval.passage, code.query, "
        "code.passage, text-matching, separation or classification",
    )
    late_chunking: StrictBool | None = Field(
        default=None, description="dense E5 model: the texts share context (docs/api.md)"
    )
    truncate: StrictBool | None = Field(default=None, description="false: an input over the model's limit is a 422")
    normalized: StrictBool | None = Field(default=None, description="accepted; vectors are always unit length")


class DenseEmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    id: str | None = None
    embedding: list[float] | str | list[int] | dict[str, Any]


class DenseEmbeddingResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    data: list[DenseEmbeddingItem]
    usage: Usage


class RerankDocument(BaseModel):
    """A document given as an object. Fields other than ``text`` are kept and returned."""

    model_config = ConfigDict(extra="allow", strict=True)
    text: StrictStr
    id: StrictStr | int | None = None


class QueryObject(BaseModel):
    model_config = _STRICT
    text: StrictStr


class RerankRequest(BaseModel):
    """Body of ``POST /v1/rerank``."""

    model_config = _STRICT

    model: StrictStr
    query: StrictStr | QueryObject
    documents: Annotated[list[StrictStr | RerankDocument], Field(min_length=1)]
    top_n: Annotated[StrictInt, Field(ge=1)] | None = None
    return_documents: StrictBool = True
    truncation: StrictBool | None = None


class RerankResultItem(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class RerankResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    usage: Usage
    results: list[RerankResultItem]


# ---- explanation (used by the search page) ---------------------------------------------------


class ExplainRequest(BaseModel):
    """Body of ``POST /v1/explain``: which document token gives each query token its maximum."""

    model_config = _STRICT
    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    dimensions: Literal[64, 96, 128] = 128


class TokenMatch(BaseModel):
    query_token: int = Field(description="position of the query token")
    document_token: int = Field(
        description="position of the document token that gives its maximum (-1: empty document)"
    )
    similarity: float


class Explanation(BaseModel):
    score: float = Field(description="exact MaxSim: the sum of the matches' similarities")
    query_tokens: list[str]
    query_token_kinds: list[Literal["special", "text", "expansion"]]
    document_tokens: list[str]
    document_token_kinds: list[Literal["special", "text", "skipped"]] = Field(
        description="'skipped': a token with no vector (punctuation)"
    )
    matches: list[TokenMatch]


class ExplainResponse(BaseModel):
    model: str
    usage: Usage
    results: list[Explanation]


# ---- indexes --------------------------------------------------------------------------------


class CreateIndexRequest(BaseModel):
    model_config = _STRICT
    name: StrictStr = Field(
        description="letters, digits, '_', '.', '-'; at most 64 characters",
        json_schema_extra={"pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    )
    dimensions: Literal[64, 96, 128] = 128
    nbits: Literal[1, 2, 4] = 2
    refine_bits: StrictInt = Field(  # not Literal[0, 1, 2, 4]: that accepts false as 0
        0,
        ge=0,
        le=4,
        description="a second residual plane (equal to nbits: 1, 2 or 4) read only to re-rank the final "
        "short list: about 4-bit recall at 2-bit memory-resident bytes per token (8-bit at 4-bit); 0 for none",
    )


class IndexDescription(BaseModel):
    name: str
    model: str | None
    dimensions: int
    nbits: int
    refine_bits: int = 0
    documents: int
    tokens: int | None = None
    segments: int | None = None
    bytes_on_disk: int | None = None


class IndexList(BaseModel):
    object: Literal["list"] = "list"
    data: list[IndexDescription]


class DocumentInput(BaseModel):
    model_config = _STRICT
    text: StrictStr
    id: StrictStr | None = None
    metadata: dict[str, Any] | None = None


class AddDocumentsRequest(BaseModel):
    model_config = _STRICT
    documents: Annotated[list[StrictStr | DocumentInput], Field(min_length=1)]


class AddDocumentsResponse(BaseModel):
    index: str
    ids: list[str]
    documents: int = Field(description="documents in the index after this write")
    usage: Usage


class DeleteIndexResponse(BaseModel):
    index: str
    deleted: Literal[True]


class DeleteDocumentsRequest(BaseModel):
    model_config = _STRICT
    ids: Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1)]


class DeleteDocumentsResponse(BaseModel):
    index: str
    deleted: int
    documents: int


FilterValue = StrictStr | StrictInt | float | StrictBool | list[StrictStr | StrictInt | float | StrictBool]


class SearchRequest(BaseModel):
    model_config = _STRICT
    query: StrictStr
    k: Annotated[StrictInt, Field(ge=1)] = 10
    filter: dict[str, FilterValue] | None = Field(
        default=None, description="metadata key -> value (or list of accepted values); all keys must match"
    )
    return_documents: StrictBool = True
    explain: StrictBool = Field(default=False, description="add the per-query-token matches to each hit")
    hybrid: StrictBool | Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=False,
        description="fuse BM25 over the stored texts with late interaction: true, or the lexical weight in [0, 1]",
    )


class SearchHitOut(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: Explanation | None = None


class SearchResponse(BaseModel):
    index: str
    model: str
    results: list[SearchHitOut]
    usage: Usage


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the field, or 'body'")
    message: str
    type: str
    input: Any = Field(default=None, description="the rejected value, cut to 200 characters")


class ErrorBody(BaseModel):
    """Every error answer. ``message`` and ``errors`` come with 422 INPUT_VALIDATION_ERROR only."""

    detail: str = Field(description="what is wrong, in one line")
    code: str = Field(description="e.g. INPUT_MODEL_NOT_FOUND, AUTH_INVALID_API_KEY, INDEX_NOT_FOUND (see docs/api.md)")
    request_id: str = Field(description="also in the X-Request-ID header")
    message: str | None = Field(default=None, description="422 INPUT_VALIDATION_ERROR: the same summary as detail")
    errors: list[FieldError] | None = Field(default=None, description="422 INPUT_VALIDATION_ERROR: one per problem")
