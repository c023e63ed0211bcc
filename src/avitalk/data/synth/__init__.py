"""The synthetic corpus: TTS speech with emotional prosody, a motion teacher, and captions."""
