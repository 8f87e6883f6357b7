"""Language identification with py3langid, whose model ships inside the package (no download)."""

from __future__ import annotations

from collections.abc import Sequence

from py3langid.langid import MODEL_FILE, LanguageIdentifier


class LanguageDetector:
    """Restricts py3langid to the languages the service supports; returns ISO 639-1 codes."""

    def __init__(self, languages: Sequence[str]) -> None:
        self.languages = list(languages)
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._identifier.set_languages(self.languages)

    def detect(self, text: str) -> str:
        language, _ = self._identifier.classify(text)
        return str(language)
