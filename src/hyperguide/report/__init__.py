"""The report of a run: `results.md` (`markdown`) and its figures (`plots`), rendered from results.json."""
