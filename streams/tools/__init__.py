"""Tools for developers and analysts: embedded broker and database, demo, simulate, bench, backtest."""
