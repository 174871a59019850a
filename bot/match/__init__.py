"""The watchlist query language (parse, fold, compile, evaluate) and backtesting a query on history."""
