"""The Lite-LLM4Rec model, its config, trainer and full-ranking metrics."""
