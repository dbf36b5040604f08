"""Late-interaction scoring: MaxSim and reranking, as plain functions."""

from maxsim.scoring.maxsim import maxsim_score, maxsim_scores, maxsim_token_matches
from maxsim.scoring.rerank import rerank_vectors, scale_scores

__all__ = ["maxsim_score", "maxsim_scores", "maxsim_token_matches", "rerank_vectors", "scale_scores"]
