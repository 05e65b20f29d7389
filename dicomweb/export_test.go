package dicomweb

// RenderWaiting returns how many requests wait for their turn to render.
func (s *Server) RenderWaiting() int64 { return s.renders.waiting.Load() }
