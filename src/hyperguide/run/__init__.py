"""The runner: training (`train`), the stage bodies and running them (`stages`), evaluation (`evaluate`), the whole
resumable bench (`bench`) and its progress board (`progress`), and your own tasks (`task_features`, `task_eval`). A
trained run is read without it (`hyperguide.trained`)."""
