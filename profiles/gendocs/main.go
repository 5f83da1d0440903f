// Command gendocs writes docs/profiles.md from the embedded profiles (run by
// go generate ./profiles).
package main

import (
	"log"
	"os"

	"crs/profiles"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: gendocs <output.md>")
	}
	s, err := profiles.Load("")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(os.Args[1], []byte(s.Markdown()), 0o644); err != nil {
		log.Fatal(err)
	}
}
