"""Every SQL statement: connections and schema (db), staff accounts, the review of shared screenings
(scoped to a centre), retention and the outbox of notices. No Flask."""
