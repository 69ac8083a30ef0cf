"""The online side: experiments between variants, bandits, off-policy evaluation (see each module)."""
