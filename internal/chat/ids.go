package chat

import (
	"encoding/base64"
	"strings"
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
	if !ok || id == "" {
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

// Node is implemented by every object that has a global id.
type Node interface {
	NodeID() string
}
