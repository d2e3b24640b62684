//! Single-use ids: RFC 7523 §3 item 7 assertion `jti`s (service accounts, client
//! assertions) and RFC 9449 §11.1 DPoP proof `jti`s, each in its own cache. An entry is
//! kept, keyed by its principal, for as long as the id could still be accepted (the
//! caller says until when: `exp` plus the verifier's leeway, or the proof window, plus
//! the allowed clock difference between replicas); it is never evicted before then, so
//! an attacker flooding fresh ids cannot push a live one out and replay it. When full,
//! expired entries go first; if none can, the new id is refused (and the refusal
//! counted). Each principal (a registered service account or client) holds at most its
//! share of the cache, so one tenant's assertions can never lock another tenant out.
//! Size it at least at (assertion rate) × (longest assertion lifetime).
//!
//! A cache that loses its entries (Redis restarted without persistence, a failover to an
//! empty replica, a flush; a Ferry process that stopped without saving its in-process
//! cache) would accept every id it forgot. So each cache knows when its state was last
//! lost ([`Losses`]) and refuses every id issued before that moment plus the leeway —
//! those it may have seen — until they expire ([`issued_before_loss`]). The shared cache
//! detects a loss with an epoch marker checked atomically with each write
//! ([`shared`]); the in-process one by saving itself at a graceful stop and treating an
//! unclean stop as a loss at start ([`persist`]).

mod memory;
mod model;
pub mod persist;
mod shared;

pub use memory::{Entry, InProcessReplay};
pub use model::{
    Capacity, Consume, Losses, ReplayCache, ReplayError, Spend, issued_at, issued_before_loss,
};
pub use shared::{EPOCH_KEY, Epoch, RedisReplay};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_without_iat_counts_as_issued_at_its_earliest() {
        assert_eq!(issued_at(Some(1_000), 1_300, 3_600), 1_000);
        assert_eq!(issued_at(None, 5_000, 3_600), 1_400);
        assert_eq!(issued_at(None, i64::MIN + 1, 3_600), i64::MIN);
    }

    #[test]
    fn ids_issued_before_a_loss_plus_the_margin_are_refused() {
        let lost = Some(10_000);
        let table = [
            // (issued, margin, refused, why)
            (9_000, 60, true, "issued well before the loss"),
            (10_000, 60, true, "issued at the loss"),
            (
                10_059,
                60,
                true,
                "within the leeway after the loss: may have been seen",
            ),
            (
                10_060,
                60,
                false,
                "loss + leeway: issued after anything seen",
            ),
            (10_100, 60, false, "issued after"),
            (10_064, 65, true, "the shared cache adds the replicas' skew"),
            (10_065, 65, false, "…and accepts from loss + leeway + skew"),
            (9_999, -5, true, "a negative margin counts as none"),
        ];
        for (issued, margin, refused, why) in table {
            assert_eq!(issued_before_loss(issued, lost, margin), refused, "{why}");
        }
        // Twin: with no loss, nothing is refused.
        assert!(!issued_before_loss(0, None, 60));
    }

    #[test]
    fn an_assertion_without_iat_is_refused_until_it_expires() {
        // Lifetime 1 h allowed: one without iat expiring an hour after the loss may
        // have been issued before it.
        let lost = Some(10_000);
        let before = issued_at(None, 10_000 + 3_600, 3_600);
        assert!(issued_before_loss(before, lost, 60));
        // Twin: one expiring later than loss + leeway + lifetime was issued after.
        let after = issued_at(None, 10_000 + 60 + 3_600, 3_600);
        assert!(!issued_before_loss(after, lost, 60));
    }

    #[test]
    fn the_latest_loss_wins() {
        let l = Losses::default();
        assert_eq!(l.at(), None);
        assert!(!l.refuses(0, 60));
        l.raise(100);
        l.raise(50);
        assert_eq!(l.at(), Some(100));
        assert!(l.refuses(159, 60));
        assert!(!l.refuses(160, 60));
    }
}
