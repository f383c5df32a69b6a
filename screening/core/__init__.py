"""The screening itself, in plain Python: conditions, rule files, the engine, the checker that proves
the rules safe, the policy, centres and the character checks. No Flask, no database."""
