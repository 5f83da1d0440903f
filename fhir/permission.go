package fhir

// Permission is one SMART v2 permission letter: c create, r read (read, vread,
// instance history), u update (update, patch), d delete, s search (search,
// type and system history). It is the vocabulary between the engine, which
// asks, and the access policy (package auth), which answers.
type Permission byte

// The SMART v2 permissions.
const (
	PermCreate Permission = 'c'
	PermRead   Permission = 'r'
	PermUpdate Permission = 'u'
	PermDelete Permission = 'd'
	PermSearch Permission = 's'
)

// PermissionOf maps a FHIR interaction to the permission it needs.
func PermissionOf(i Interaction) Permission {
	switch i {
	case Create:
		return PermCreate
	case Read, VRead, HistoryInstance:
		return PermRead
	case Update:
		return PermUpdate
	case Delete:
		return PermDelete
	}
	return PermSearch
}

// Verb is the permission as a verb, for messages ("… this caller may update").
func (p Permission) Verb() string {
	switch p {
	case PermCreate:
		return "create"
	case PermRead:
		return "read"
	case PermUpdate:
		return "update"
	case PermDelete:
		return "delete"
	}
	return "search"
}
