"""Tokenisation: text -> token ids with ColBERT markers, query expansion and skiplists."""
