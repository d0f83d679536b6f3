"""A trained run, read without training: its folder (`folder`), the table of the stages it holds
(`stage_table`), and its rows' models loaded from their checkpoints (`loading`)."""
