"""Audio from the WebRTC edge to transcripts: decode, segment, transcribe."""
