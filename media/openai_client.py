"""The `openai` SDK client that the speech engines (in and out) build the same way."""

from __future__ import annotations

from typing import Any


def import_openai(error: type[Exception], what: str) -> Any:
    """The SDK, imported only when an openai engine is chosen, with an install hint."""
    try:
        import openai
    except ImportError:
        raise error(f"the openai {what} engine needs the OpenAI SDK: pip install openai") from None
    return openai


def make_client(
    *,
    api_key: str | None,
    base_url: str | None,
    timeout_s: float,
    error: type[Exception],
    what: str,
    prefix: str,
) -> Any:
    """An AsyncOpenAI that never retries: a retried request would arrive after the ones made
    later (a transcript out of order, a sentence after the caller waited twice); the callers
    report the failure and go on instead. `prefix` names the settings in the error."""
    openai = import_openai(error, what)
    if not api_key:
        if not base_url:
            raise error(
                f"the openai {what} engine needs {prefix}_API_KEY (or OPENAI_API_KEY), "
                f"or {prefix}_BASE_URL for a server without keys"
            )
        api_key = "unused"  # self-hosted servers often take none; the SDK wants one
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url or None, timeout=timeout_s, max_retries=0
    )
