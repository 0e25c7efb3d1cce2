package postgres

import (
	"context"
	"errors"
	"fmt"

	"askgate/internal/chat"
)

const (
	// upsertUserSQL writes only when something changed, so that upserting
	// the same profile on every sign-in costs no write.
	upsertUserSQL = `INSERT INTO users (id, name, email, avatar_url, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET
	name = excluded.name, email = excluded.email, avatar_url = excluded.avatar_url, updated_at = excluded.updated_at
WHERE (users.name, users.email, users.avatar_url) IS DISTINCT FROM (excluded.name, excluded.email, excluded.avatar_url)`

	usersByIDSQL = `SELECT id, name, email, avatar_url FROM users WHERE id = ANY($1)`
)

// UpsertUser creates or updates a user of the built-in directory.
func (s *Store) UpsertUser(ctx context.Context, u *chat.User) error {
	if u == nil || u.ID == "" {
		return errors.New("postgres: upsert user: no user id")
	}
	if _, err := s.pool.Exec(ctx, upsertUserSQL, u.ID, u.Name, u.Email, u.AvatarURL, chat.Now()); err != nil {
		return fmt.Errorf("postgres: upsert user: %w", err)
	}
	return nil
}

// UsersByID returns the users with the given ids; unknown ids are absent.
func (s *Store) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, usersByIDSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: users by id: %w", err)
	}
	defer rows.Close()
	var (
		users []*chat.User
		slab  = make([]chat.User, 0, len(ids))
	)
	for rows.Next() {
		slab = append(slab, chat.User{})
		u := &slab[len(slab)-1]
		if err := rows.Scan(&u.ID, &u.Name, &u.Email, &u.AvatarURL); err != nil {
			return nil, fmt.Errorf("postgres: users by id: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: users by id: %w", err)
	}
	return users, nil
}
