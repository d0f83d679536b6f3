"""Diffusion process math (schedules, noising, the reverse step, respacing, classifier-free guidance), kept apart
from the networks: the denoiser is passed in as a function."""
