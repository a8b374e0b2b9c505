"""The Prefect API going away mid-run: told apart from a failure of the experiment, and said in one line."""

from __future__ import annotations

from trainer.errors import Resumable


class PrefectAPILost(Resumable):
    """The Prefect API stopped answering while an experiment ran."""

    @classmethod
    def saying(cls, reason: str) -> PrefectAPILost:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url or "the ephemeral API"
        return cls(f"the Prefect API at {url} stopped answering ({reason}); run the same command again once it "
                   "answers: it continues from the last checkpoint")


def lost_api(error: BaseException | None) -> PrefectAPILost | None:
    """PrefectAPILost when `error`, or an error it was raised from, is a request to the Prefect API that found
    no answer (refused, reset, timed out: Prefect's client is httpx); else None."""
    import httpx

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, httpx.TransportError):
            return PrefectAPILost.saying(str(error) or type(error).__name__)
        error = error.__cause__ or error.__context__
    return None
