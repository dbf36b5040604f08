"""Late-interaction scoring: MaxSim and reranking, as plain functions."""

from maxsim.scoring.maxsim import maxsim_score, maxsim_scores, maxsim_token_matches

__all__ = ["maxsim_score", "maxsim_scores", "maxsim_token_matches"]
