package subscriptions

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Message types of both subprotocols.
const (
	// Both.
	typeConnectionInit = "connection_init"
	typeConnectionAck  = "connection_ack"
	typeError          = "error"
	typeComplete       = "complete"
	// graphql-transport-ws.
	typePing      = "ping"
	typePong      = "pong"
	typeSubscribe = "subscribe"
	typeNext      = "next"
	// Legacy graphql-ws.
	typeStart               = "start"
	typeStop                = "stop"
	typeData                = "data"
	typeConnectionError     = "connection_error"
	typeConnectionTerminate = "connection_terminate"
	typeKeepAlive           = "ka"
)

// Messages without variable parts, encoded once.
var (
	msgConnectionAck = encodeMessage(typeConnectionAck, "", nil)
	msgKeepAlive     = encodeMessage(typeKeepAlive, "", nil)
)

// wireMessage is a message as the client sends it. id and payload stay
// raw: their types depend on the message type.
type wireMessage struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// decodeMessage decodes a client message: a JSON object with a string
// type.
func decodeMessage(data []byte) (wireMessage, error) {
	var m wireMessage
	if !isObject(data) {
		//lint:ignore ST1005 the message is the close reason clients see, worded as the protocol's reference server words it
		return m, errors.New("Invalid message: not a JSON object")
	}
	if err := json.Unmarshal(data, &m); err != nil {
		//lint:ignore ST1005 the message is the close reason clients see
		return m, errors.New("Invalid message: malformed JSON or a type that is not a string")
	}
	return m, nil
}

// handleTransportWS handles a graphql-transport-ws message. Anything the
// protocol does not define closes the connection with 4400.
func (c *wsConn) handleTransportWS(data []byte, start time.Time) {
	m, err := decodeMessage(data)
	if err != nil {
		c.shut(CloseBadRequest, err.Error())
		return
	}
	switch m.Type {
	case typeConnectionInit:
		payload, err := decodeObject(m.Payload)
		if err != nil {
			c.shut(CloseBadRequest, "Invalid connection_init: the payload must be an object")
			return
		}
		c.connectionInit(payload)
	case typePing:
		if !isObjectOrAbsent(m.Payload) {
			c.shut(CloseBadRequest, "Invalid ping: the payload must be an object")
			return
		}
		var payload []byte
		if !isNull(m.Payload) {
			payload = m.Payload
		}
		c.send(wsItem{data: encodeMessage(typePong, "", payload)})
	case typePong:
		if !isObjectOrAbsent(m.Payload) {
			c.shut(CloseBadRequest, "Invalid pong: the payload must be an object")
		}
	case typeSubscribe:
		id, err := decodeID(m.ID)
		if err != nil {
			c.shut(CloseBadRequest, "Invalid subscribe: "+err.Error())
			return
		}
		params, err := decodeParams(m.Payload)
		if err != nil {
			c.shut(CloseBadRequest, "Invalid subscribe: "+err.Error())
			return
		}
		c.mu.Lock()
		acked := c.acked
		c.mu.Unlock()
		if !acked {
			c.shut(CloseUnauthorized, "Unauthorized")
			return
		}
		params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
		c.subscribe(id, params)
	case typeComplete:
		id, err := decodeID(m.ID)
		if err != nil {
			c.shut(CloseBadRequest, "Invalid complete: "+err.Error())
			return
		}
		c.stop(id)
	case "":
		c.shut(CloseBadRequest, "Invalid message: no type")
	default:
		c.shut(CloseBadRequest, "Invalid message type "+strconv.Quote(closeReason(m.Type)))
	}
}

// handleLegacy handles a legacy graphql-ws message. As its protocol says,
// a message that cannot be parsed is answered with connection_error and
// the connection stays; a bad operation is answered with error.
func (c *wsConn) handleLegacy(data []byte, start time.Time) {
	m, err := decodeMessage(data)
	if err != nil {
		c.send(wsItem{data: connectionError(err.Error())})
		return
	}
	switch m.Type {
	case typeConnectionInit:
		payload, err := decodeObject(m.Payload)
		if err != nil {
			c.shut(CloseBadRequest, "Invalid connection_init", connectionError("Invalid connection_init: the payload must be an object"))
			return
		}
		c.connectionInit(payload)
	case typeStart:
		id, err := decodeID(m.ID)
		if err != nil {
			c.send(wsItem{data: connectionError("Invalid start: " + err.Error())})
			return
		}
		op := &wsOperation{id: id}
		params, err := decodeParams(m.Payload)
		if err != nil {
			c.sendErrors(op, gqlerror.List{codedError(codeBadRequest, "Invalid start: "+err.Error())})
			return
		}
		c.mu.Lock()
		acked := c.acked
		c.mu.Unlock()
		if !acked {
			c.sendErrors(op, gqlerror.List{codedError(codeUnauthenticated, "the connection is not initialised: send connection_init first")})
			return
		}
		params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
		c.subscribe(id, params)
	case typeStop:
		id, err := decodeID(m.ID)
		if err != nil {
			c.send(wsItem{data: connectionError("Invalid stop: " + err.Error())})
			return
		}
		c.stop(id)
	case typeConnectionTerminate:
		c.shut(1000, "connection terminated")
	default:
		msg := "Invalid message type " + strconv.Quote(m.Type)
		if id, err := decodeID(m.ID); err == nil {
			c.sendErrors(&wsOperation{id: id}, gqlerror.List{codedError(codeBadRequest, msg)})
			return
		}
		c.send(wsItem{data: connectionError(msg)})
	}
}

// subscribePayload is the payload of subscribe and start.
type subscribePayload struct {
	Query         *string        `json:"query"`
	OperationName *string        `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
	// DocumentID names a trusted document, as graphql-codegen's clients
	// send it.
	DocumentID string `json:"documentId"`
}

// decodeParams decodes the operation of subscribe or start. The query may
// be left out only when the extensions name a stored operation (automatic
// persisted query, trusted document).
func decodeParams(raw json.RawMessage) (*graphql.RawParams, error) {
	if !isObject(raw) {
		return nil, errors.New("the payload must be an object")
	}
	var p subscribePayload
	if err := decodeJSON(raw, &p); err != nil {
		return nil, errors.New("the payload must have a string query and object variables and extensions")
	}
	params := &graphql.RawParams{Variables: p.Variables, Extensions: p.Extensions}
	if p.OperationName != nil {
		params.OperationName = *p.OperationName
	}
	if p.DocumentID != "" {
		if params.Extensions == nil {
			params.Extensions = make(map[string]any, 1)
		}
		params.Extensions["documentId"] = p.DocumentID
	}
	if p.Query != nil {
		params.Query = *p.Query
	} else if !namesStoredOperation(params) {
		return nil, errors.New("the payload has no query")
	}
	return params, nil
}

// decodeID decodes a message id: a non-empty string.
func decodeID(raw json.RawMessage) (string, error) {
	var id string
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil || id == "" {
		return "", errors.New("the id must be a non-empty string")
	}
	return id, nil
}

// decodeObject decodes an optional object payload (absent or null is
// nil).
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	if isNull(raw) {
		return nil, nil
	}
	if !isObject(raw) {
		return nil, errors.New("not an object")
	}
	var m map[string]any
	if err := decodeJSON(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeJSON decodes JSON keeping numbers exact, as gqlgen expects of
// variables.
func decodeJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func isObject(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

func isObjectOrAbsent(raw json.RawMessage) bool {
	return isNull(raw) || isObject(raw)
}

// encodeMessage encodes a server message; payload is JSON or nil.
func encodeMessage(typ, id string, payload []byte) []byte {
	b := make([]byte, 0, len(`{"type":"","id":,"payload":}`)+len(typ)+len(id)+2+len(payload))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, id)
	}
	if payload != nil {
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if plainJSONString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	enc, err := json.Marshal(s)
	if err != nil { // not for a string
		return append(b, `""`...)
	}
	return append(b, enc...)
}

// plainJSONString reports whether s is written in JSON as it is, between
// quotes, as operation ids usually are.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// connectionError encodes a legacy connection_error message.
func connectionError(msg string) []byte {
	payload, _ := json.Marshal(map[string]any{"message": strings.TrimSpace(msg)})
	return encodeMessage(typeConnectionError, "", payload)
}

func itoa(n int) string { return strconv.Itoa(n) }
