"""Moving-window limits on failed admin sign-ins and unknown participant links (issue #28).

Its own module because both the request guard and the app state hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from limits import RateLimitItem, parse, storage, strategies

from altcap.study.config import StudySiteConfig


@dataclass
class FailureLimits:
    """Moving-window counters of failed admin sign-ins and unknown participant links.

    In-process memory: one `serve` process holds all counters (the study runs one uvicorn worker).
    """

    admin_per_client: RateLimitItem
    admin_total: RateLimitItem
    token_per_client: RateLimitItem
    limiter: strategies.MovingWindowRateLimiter = field(
        default_factory=lambda: strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    )

    @classmethod
    def from_site(cls, site: StudySiteConfig) -> FailureLimits:
        """The limits configured for this server."""
        return cls(
            parse(site.admin_login_failures_per_client),
            parse(site.admin_login_failures_total),
            parse(site.token_failures_per_client),
        )

    def admin_allowed(self, client: str) -> bool:
        """Whether another admin sign-in attempt from `client` may be checked now."""
        return self.limiter.test(self.admin_per_client, "admin", client) and self.limiter.test(
            self.admin_total, "admin-all"
        )

    def record_admin_failure(self, client: str) -> None:
        """Count a wrong admin secret against the client and the account."""
        self.limiter.hit(self.admin_per_client, "admin", client)
        self.limiter.hit(self.admin_total, "admin-all")

    def token_allowed(self, client: str) -> bool:
        """Whether `client` may look up participant links now."""
        return self.limiter.test(self.token_per_client, "token", client)

    def record_token_failure(self, client: str) -> None:
        """Count an unknown participant link against the client."""
        self.limiter.hit(self.token_per_client, "token", client)
