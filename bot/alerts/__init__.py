"""From a matched item to a posted message: compose, summarize, render, the outbox and digests."""
