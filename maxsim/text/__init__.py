"""Text checks done before tokenisation: types, unpaired surrogates, control characters."""

from maxsim.text.clean import InputError, clean_text, validate_texts

__all__ = ["InputError", "clean_text", "validate_texts"]
