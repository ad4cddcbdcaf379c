"""The backoff schedule and retry rules, with an injected clock and random source."""
import unittest

from alveare import retry_delay, should_retry


class BackoffSchedule(unittest.TestCase):
    def test_doubles_from_half_a_second_to_eight(self):
        self.assertEqual([retry_delay(a, {}, 0, random=lambda: 0) for a in range(6)], [0.5, 1, 2, 4, 8, 8])

    def test_jitter_takes_off_at_most_a_quarter(self):
        self.assertEqual([retry_delay(a, {}, 0, random=lambda: 1) for a in range(3)], [0.375, 0.75, 1.5])

    def test_honours_retry_after_ms_then_retry_after(self):
        self.assertEqual(retry_delay(0, {"retry-after-ms": "1234", "retry-after": "9"}, 0), 1.234)
        self.assertEqual(retry_delay(3, {"retry-after": "2"}, 0), 2.0)

    def test_reads_retry_after_as_an_http_date(self):
        now = 1795600800.0  # 2026-11-25T10:00:00Z
        self.assertAlmostEqual(retry_delay(0, {"retry-after": "Wed, 25 Nov 2026 10:00:07 GMT"}, now), 7.0)

    def test_gives_no_delay_for_a_server_wait_over_a_minute(self):
        self.assertIsNone(retry_delay(0, {"retry-after": "3600"}, 0, random=lambda: 0))
        self.assertIsNone(retry_delay(0, {"retry-after-ms": "60001"}, 0, random=lambda: 0))
        self.assertEqual(retry_delay(0, {"retry-after": "60"}, 0, random=lambda: 0), 60.0)


class RetryRules(unittest.TestCase):
    def test_retryable_statuses(self):
        for status in (408, 409, 429, 500, 502, 503, 504):
            self.assertTrue(should_retry(status, {}, None), status)
        for status in (400, 401, 403, 404, 413):
            self.assertFalse(should_retry(status, {}, None), status)

    def test_never_a_monthly_quota_or_when_the_server_says_no(self):
        self.assertFalse(should_retry(429, {}, "monthly_quota_exceeded"))
        self.assertFalse(should_retry(429, {"x-should-retry": "false"}, "rate_limit_exceeded"))
        self.assertTrue(should_retry(400, {"x-should-retry": "true"}, None))


if __name__ == "__main__":
    unittest.main()
