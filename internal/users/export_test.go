package users

// Settle waits for the cache's calls to the source that are running (a
// background refresh) to end. Tests call it when nothing else calls the
// cache.
func (c *Cache) Settle() { c.wg.Wait() }
