package resolvers

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"askgate/internal/chat"
)

// Question and key limits.
const (
	maxQuestionLength       = 16000
	maxIdempotencyKeyLength = 128
	maxModelLength          = 200
	// titleFromQuestion is how much of a first question becomes the
	// title of a conversation started without one.
	titleFromQuestion = 60
)

// checkQuestion trims a question and checks it is 1 to maxQuestionLength
// characters without control characters other than tabs and newlines.
func checkQuestion(q string) (string, error) {
	t := strings.TrimSpace(q)
	if t == "" {
		return "", chat.Errorf(chat.CodeBadUserInput, "question must not be empty")
	}
	if utf8.RuneCountInString(t) > maxQuestionLength {
		return "", chat.Errorf(chat.CodeBadUserInput, "question must be at most %d characters", maxQuestionLength)
	}
	if !utf8.ValidString(t) || strings.ContainsFunc(t, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t' && r != '\r') || r == 0x7f
	}) {
		return "", chat.Errorf(chat.CodeBadUserInput, "question must not contain control characters")
	}
	return t, nil
}

// checkModel checks a model name given by a client.
func checkModel(m *string) (string, error) {
	if m == nil {
		return "", nil
	}
	s := strings.TrimSpace(*m)
	if s == "" || len(s) > maxModelLength || strings.ContainsFunc(s, unicode.IsControl) {
		return "", chat.Errorf(chat.CodeBadUserInput, "model must be a model id from the models query")
	}
	return s, nil
}

// checkIdempotencyKey checks a client's idempotency key: 1 to 128
// printable ASCII characters.
func checkIdempotencyKey(k *string) (string, error) {
	if k == nil {
		return "", nil
	}
	if *k == "" || len(*k) > maxIdempotencyKeyLength || strings.ContainsFunc(*k, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return "", chat.Errorf(chat.CodeBadUserInput, "idempotencyKey must be 1 to %d printable ASCII characters", maxIdempotencyKeyLength)
	}
	return *k, nil
}

// defaultTitleFor makes a title from the beginning of a question.
func defaultTitleFor(question string) string {
	line, _, _ := strings.Cut(question, "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) <= titleFromQuestion {
		if line == "" {
			return defaultTitle
		}
		return line
	}
	r := []rune(line)
	return strings.TrimSpace(string(r[:titleFromQuestion-1])) + "…"
}
