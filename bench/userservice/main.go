// Command userservice is a stand-in user service for benchmarks: it answers
// the contract's GET /users?ids=ID1,ID2,… with a made-up profile for every
// id, so that askgate and the peer it is compared with reach the same
// service over HTTP.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strings"
)

type user struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	AvatarURL string `json:"avatarUrl"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18801", "listen address")
	flag.Parse()
	http.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		var out struct {
			Users []user `json:"users"`
		}
		for _, id := range strings.Split(r.URL.Query().Get("ids"), ",") {
			if id != "" {
				out.Users = append(out.Users, user{ID: id, Name: "User " + id, Email: id + "@example.com", AvatarURL: "https://avatars.example/" + id + ".png"})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
