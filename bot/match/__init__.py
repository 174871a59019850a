"""The watchlist query language and backtesting a query on history; bot.match.query is the public face.

syntax: the tree; limits: what a query may be; parser: text to tree; fold: text folding; compile:
terms to regexes; prefilter: which terms may occur; near: NEAR; evaluate: a tree on one item.
"""
