package chat

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Kind names the type of object a global id refers to.
type Kind string

// The kinds of node.
const (
	KindUser         Kind = "User"
	KindConversation Kind = "Conversation"
	KindMessage      Kind = "Message"
)

// EncodeNodeID returns the opaque global id of the object of the given kind
// and local id: base64url("Kind:id"), so that an id says its type and
// Query.node can find the object from the id alone.
func EncodeNodeID(kind Kind, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(kind) + ":" + id))
}

// DecodeNodeID splits a global id into kind and local id. Any malformed id
// yields ErrNotFound: to a client, a forged id names no object.
func DecodeNodeID(gid string) (Kind, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(gid)
	if err != nil {
		return "", "", ErrNotFound
	}
	kind, id, ok := strings.Cut(string(raw), ":")
	if !ok || !ValidID(id) {
		return "", "", ErrNotFound
	}
	switch k := Kind(kind); k {
	case KindUser, KindConversation, KindMessage:
		return k, id, nil
	}
	return "", "", ErrNotFound
}

// DecodeNodeIDOf is DecodeNodeID for an id that must be of the given kind.
func DecodeNodeIDOf(want Kind, gid string) (string, error) {
	kind, id, err := DecodeNodeID(gid)
	if err != nil || kind != want {
		return "", ErrNotFound
	}
	return id, nil
}

// MaxIDLength bounds a local id (a user's token subject, or a store id).
const MaxIDLength = 256

// ValidID reports whether id can name an object: non-empty, at most
// MaxIDLength bytes of valid UTF-8 without control characters. Ids that
// come from clients (global ids, cursors, token subjects) are checked with
// it before they reach a store, where such bytes are not valid text.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Node is implemented by every object that has a global id.
type Node interface {
	NodeID() string
}
