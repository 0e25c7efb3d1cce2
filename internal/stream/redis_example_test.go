package stream_test

import (
	"context"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"

	"askgate/internal/stream"
)

// ExampleNewRedis wires the Redis token log, as every gateway instance of
// a cluster does with the same Redis and prefix: a log written on one
// instance is read, replay then live tail, on any of them.
func ExampleNewRedis() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ClientName: "askgate"})
	defer client.Close()
	logs := stream.NewRedis(client, stream.RedisOptions{Prefix: "askgate:stream:"})
	defer logs.Close()

	if err := logs.Open(ctx, "answer-1"); err != nil {
		fmt.Println(err)
		return
	}
	for _, delta := range []string{"Hello", ",", " world"} {
		logs.Append(ctx, "answer-1", delta)
	}
	logs.Finish(ctx, "answer-1")

	r, err := logs.Read(ctx, "answer-1", 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	for {
		ev, err := r.Next(ctx)
		if err != nil {
			if err != io.EOF {
				fmt.Println(err)
			}
			break
		}
		fmt.Printf("%d %q done=%v\n", ev.Seq, ev.Delta, ev.Done)
	}
}
