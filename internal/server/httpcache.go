package server

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"askgate/internal/auth"
	"askgate/internal/cachecontrol"
)

// HTTP caching of GraphQL responses (see the README's "HTTP caching").
//
// Only a GET request of a persisted query — an APQ hash or a trusted
// document id, without the document — can be cached: its URL is short and
// stable. Its response, when it has no errors, carries
//
//   - ETag: a weak validator (W/"…"), the SHA-256 (128 bits, base64url)
//     of the response's media type, the viewer and the response's data.
//     Weak, and over the data rather than the whole body, because the
//     body's extensions report the request itself (its cost, and the
//     viewer's cost budget after it), which changes from one request to
//     the next while the data stays the same: a strong tag over the body
//     would never match again once a cost budget is on. If-None-Match
//     compares weakly, so a weak tag is all a 304 needs;
//   - Cache-Control: "private, max-age=N" with N the operation's policy
//     (cachecontrol.Compute from the schema's @cacheControl hints), capped
//     by the seconds the viewer's token has left; "no-store" when N is 0.
//     Never "public": every request is authenticated, so every response is
//     the viewer's, whatever scope the hints declare.
//
// and a request whose If-None-Match matches the ETag gets 304 Not Modified
// without a body. The operation runs in full before that comparison, so
// the 304 passes every check a 200 does (authentication, rate limits, cost
// budget) and is only a saving of bandwidth.
//
// Every other response — POST, mutations, errors, any status but 200 — is
// "no-store" without an ETag. Every response of the transport carries
// "Vary: Accept, Authorization": the body depends on the token, the media
// type on Accept.

// varyHeader is the Vary of every GraphQL response over HTTP.
const varyHeader = "Accept, Authorization"

// httpCaching is how one response may be cached.
type httpCaching struct {
	// cacheControl is the Cache-Control header ("no-store" when empty).
	cacheControl string
	// validate says that the response gets an ETag and may be answered
	// with 304 when it matches If-None-Match (the request's, in match).
	validate bool
	viewer   string
	match    []string
}

// cachingFor returns how the successful response of a persisted query
// sent with GET may be cached: oc is its operation, r the request.
func (s *Server) cachingFor(r *http.Request, oc *graphql.OperationContext) httpCaching {
	p := s.documents.policy(oc.RawQuery, oc.Doc, oc.Operation, func() cachecontrol.Policy {
		return cachecontrol.Compute(s.schema.Schema(), oc.Doc, oc.Operation)
	})
	maxAge := p.MaxAge
	v, ok := auth.ViewerFrom(r.Context())
	if !ok {
		// Not reachable (the route authenticates), but nothing the
		// gateway serves without a viewer is meant for shared caches.
		maxAge = 0
	} else if !v.ExpiresAt.IsZero() {
		// A stored response outliving the token it was read with would
		// still be shown after the token expired.
		maxAge = min(maxAge, int(time.Until(v.ExpiresAt)/time.Second))
	}
	c := httpCaching{validate: true, viewer: v.ID, match: r.Header.Values("If-None-Match")}
	if maxAge > 0 {
		c.cacheControl = "private, max-age=" + strconv.Itoa(maxAge)
	}
	return c
}

// etag returns the weak entity tag of the data of a response in media type
// media to viewer: the first 128 bits of their SHA-256, base64url, quoted.
func etag(media, viewer string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(media))
	h.Write([]byte{0})
	h.Write([]byte(viewer))
	h.Write([]byte{0})
	h.Write(data)
	var sum [sha256.Size]byte
	return `W/"` + base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:16]) + `"`
}

// noneMatch reports whether If-None-Match header values (a list of entity
// tags, or "*") match the entity tag tag, by the weak comparison RFC 9110
// requires for If-None-Match: W/ prefixes are ignored.
func noneMatch(values []string, tag string) bool {
	opaque := strings.TrimPrefix(tag, "W/")
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				return true
			}
			v = strings.TrimPrefix(v, "W/")
			if len(v) < 2 || v[0] != '"' {
				break // malformed: ignore the rest of this value
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				break
			}
			if v[:end+2] == opaque {
				return true
			}
			v = v[end+2:]
		}
	}
	return false
}
