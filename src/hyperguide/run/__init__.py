"""Running the benchmark: a run folder (`folder`), its training stages (`stages`), training (`train`), evaluation
(`evaluate`), the whole resumable bench (`bench`) and its progress board (`progress`)."""
