// Package mongo is the MongoDB backend of crs (go.mongodb.org/mongo-driver/v2),
// for deployments that run several crs instances on a replica set or a sharded
// cluster. It passes the same conformance suite as the SQLite backend, also
// against FerretDB, so it keeps to the subset of MongoDB every MongoDB-wire
// server answers correctly: plain finds on flat fields and arrays of scalars
// (no $lookup, no $elemMatch, no aggregation beyond a count).
//
// Documents: collection "resources" holds the current version of every
// resource (_id "Type/id") with the exact JSON body, the server-owned fields,
// the extracted index values, "keys" (a flat array of encoded equality keys
// that a multikey index serves) and per-parameter arrays of dates, numbers
// and strings and sort keys; collection "versions" holds every version (_id
// "Type/id/vid"). A search is compiled to one server-side filter, sort and
// limit with a keyset cursor (plan.go, page.go); the conditions the common
// subset cannot say exactly are sent as a superset and checked again in Go
// with the SQLite backend's semantics (eval.go).
//
// Atomic writes: where the deployment supports multi-document transactions
// (a replica set or sharded cluster) a Write runs in one; elsewhere (a
// standalone server, FerretDB) a Write keeps a journal of the before-images of
// what it changes and undoes them on failure, and a journal left by a crash is
// undone when the store opens. Without transactions, one crs instance serves a
// database: it serialises its writes and holds readers back while a write is in
// flight, so nothing is visible before the Write returns.
package mongo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"crs/fhir"
	"crs/fhir/store"
)

// Store is the MongoDB backend.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	res    *mongo.Collection // current versions
	ver    *mongo.Collection // every version
	jrn    *mongo.Collection // open write journals (no-transaction path)
	meta   *mongo.Collection // counters

	transactions bool         // the deployment supports multi-document transactions
	wmu          sync.Mutex   // one write at a time in this process
	lock         sync.RWMutex // held exclusively while a journal write is applied at commit
	seq, rid     int64        // counters (no-transaction path; guarded by wmu)
	returned     atomic.Int64 // resource documents returned to searches
	log          *slog.Logger
}

// resourceDoc is a document of "resources".
type resourceDoc struct {
	ID      string    `bson:"_id"` // Type/id; a write's pending version: Type/id#journal
	Key     string    `bson:"key"` // Type/id
	Type    string    `bson:"type"`
	LID     string    `bson:"id"`
	VID     int       `bson:"vid"`
	TS      int64     `bson:"ts"`
	Deleted bool      `bson:"deleted"`
	Method  string    `bson:"method"`
	Body    []byte    `bson:"body"`
	Seq     int64     `bson:"seq"`
	Row     int64     `bson:"row"` // stable per resource: the paging tie-break
	Keys    []string  `bson:"keys"`
	Index   []indexed `bson:"idx"`
	Pend    string    `bson:"pend,omitempty"`     // the journal of the write that has not committed it
	Locked  string    `bson:"lockedBy,omitempty"` // the journal of a write that replaces it
	Layout  int       `bson:"lay"`                // the version of the derived fields (layout)
	Derived derived   `bson:",inline"`            // the per-parameter fields (plan.go)
}

// versionDoc is a document of "versions".
type versionDoc struct {
	ID      string `bson:"_id"` // Type/id/vid
	Type    string `bson:"type"`
	LID     string `bson:"id"`
	VID     int    `bson:"vid"`
	TS      int64  `bson:"ts"`
	Deleted bool   `bson:"deleted"`
	Method  string `bson:"method"`
	Body    []byte `bson:"body"`
	Seq     int64  `bson:"seq"`
	Pend    string `bson:"pend,omitempty"` // the journal of the write that has not committed it
}

// Open connects to uri (the database is its path, "crs" when none), creates the
// indexes, detects whether transactions are available and recovers any write
// journal a crash left.
func Open(ctx context.Context, uri string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("--store %q: %v", uri, err)
	}
	dbName := strings.Trim(u.Path, "/")
	if dbName == "" {
		dbName = "crs"
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, fmt.Errorf("MongoDB at %s: %v", u.Host, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("MongoDB at %s does not answer: %v", u.Host, err)
	}
	db := client.Database(dbName)
	s := &Store{client: client, db: db, res: db.Collection("resources"), ver: db.Collection("versions"),
		jrn: db.Collection("journal"), meta: db.Collection("meta"), log: log}
	if err := s.createIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	var hello bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err == nil {
		_, rs := hello["setName"]
		s.transactions = rs || hello["msg"] == "isdbgrid"
	}
	if s.transactions {
		log.Info("MongoDB store: multi-document transactions", "database", dbName)
	} else {
		log.Info("MongoDB store: no multi-document transactions on this deployment; writes use a journal and one crs instance serves the database", "database", dbName)
		if err := s.recover(ctx); err != nil {
			_ = client.Disconnect(context.Background())
			return nil, err
		}
	}
	if err := s.upgrade(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.loadCounters(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

// createIndexes creates the indexes the queries use, those that are missing
// (asking again for an existing index is not answered alike by every
// MongoDB-wire server).
func (s *Store) createIndexes(ctx context.Context) error {
	for _, c := range []struct {
		coll    *mongo.Collection
		indexes map[string]bson.D
	}{
		{s.res, map[string]bson.D{
			// Equality keys, then the row: an $in on keys is merged in row
			// order, so a page of a search without _sort stops at its limit.
			"type_keys_row": {{Key: "type", Value: 1}, {Key: "keys", Value: 1}, {Key: "row", Value: 1}},
			"type_row":      {{Key: "type", Value: 1}, {Key: "row", Value: 1}},
			"type_id":       {{Key: "type", Value: 1}, {Key: "id", Value: 1}}, // _has: the ids pointed to
			"pend":          {{Key: "pend", Value: 1}},
		}},
		{s.ver, map[string]bson.D{
			"type_seq":    {{Key: "type", Value: 1}, {Key: "seq", Value: -1}},
			"seq":         {{Key: "seq", Value: -1}},
			"type_id_vid": {{Key: "type", Value: 1}, {Key: "id", Value: 1}, {Key: "vid", Value: -1}},
			"pend":        {{Key: "pend", Value: 1}},
		}},
	} {
		have := map[string]bool{}
		cur, err := c.coll.Indexes().List(ctx)
		if err != nil {
			return fmt.Errorf("list indexes of %s: %v", c.coll.Name(), err)
		}
		var existing []bson.M
		if err := cur.All(ctx, &existing); err != nil {
			return fmt.Errorf("list indexes of %s: %v", c.coll.Name(), err)
		}
		for _, ix := range existing {
			if name, ok := ix["name"].(string); ok {
				have[name] = true
			}
		}
		// type_keys became type_keys_row, of which it is a prefix.
		if c.coll == s.res && have["type_keys"] {
			if err := c.coll.Indexes().DropOne(ctx, "type_keys"); err != nil {
				return fmt.Errorf("drop the retired index type_keys: %v", err)
			}
		}
		var models []mongo.IndexModel
		for _, name := range sortedNames(c.indexes) {
			if !have[name] {
				models = append(models, mongo.IndexModel{Keys: c.indexes[name], Options: options.Index().SetName(name)})
			}
		}
		if len(models) == 0 {
			continue
		}
		if _, err := c.coll.Indexes().CreateMany(ctx, models); err != nil {
			return fmt.Errorf("create indexes on %s: %v", c.coll.Name(), err)
		}
	}
	return nil
}

func sortedNames(m map[string]bson.D) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Store) loadCounters(ctx context.Context) error {
	var v versionDoc
	err := s.ver.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&v)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("read the version counter: %v", err)
	}
	s.seq = v.Seq
	var r resourceDoc
	err = s.res.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "row", Value: -1}})).Decode(&r)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("read the row counter: %v", err)
	}
	s.rid = r.Row
	return nil
}

// Close disconnects.
func (s *Store) Close() error {
	return s.client.Disconnect(context.Background())
}

// Ready pings the primary.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fhir.Errorf(fhir.Unavailable, "", "MongoDB does not answer")
	}
	return nil
}

// Transactions reports whether writes use multi-document transactions.
func (s *Store) Transactions() bool { return s.transactions }

func internal(op string, err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := err.(*fhir.Error); ok {
		return fe
	}
	return fhir.InternalError(op, err)
}

func toVersion(d resourceDoc) store.Version {
	return store.Version{Type: d.Type, ID: d.LID, VersionID: d.VID, LastUpdated: time.Unix(0, d.TS).UTC(), Deleted: d.Deleted, Method: d.Method, Body: d.Body}
}

func fromVersionDoc(d versionDoc) store.Version {
	return store.Version{Type: d.Type, ID: d.LID, VersionID: d.VID, LastUpdated: time.Unix(0, d.TS).UTC(), Deleted: d.Deleted, Method: d.Method, Body: d.Body}
}

// db is what reads go through: the store (outside writes) or a write in flight.
type reader struct {
	s       *Store
	ctx     context.Context // a session context inside a transaction
	journal string          // inside a journal write: its id (it sees its own pending changes)
}

// visible is the filter on resources a reader sees: committed documents, and
// inside a journal write its own pending ones instead of those they replace.
func (r reader) visible() bson.D {
	if r.journal == "" {
		return bson.D{{Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}}
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "pend", Value: r.journal}},
		bson.D{{Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}, {Key: "lockedBy", Value: bson.D{{Key: "$ne", Value: r.journal}}}},
	}}}
}

// versionsVisible is the filter on versions a reader sees.
func (r reader) versionsVisible() bson.D {
	if r.journal == "" {
		return bson.D{{Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}}
	}
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "pend", Value: r.journal}},
		bson.D{{Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}},
	}}}
}

func (r reader) read(ctx context.Context, typ, id string) (store.Version, error) {
	d, err := r.current(ctx, typ+"/"+id)
	if err != nil {
		return store.Version{}, err
	}
	if d == nil {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "%s/%s is not known", typ, id)
	}
	return toVersion(*d), nil
}

// current returns the document of a resource's current version as this reader
// sees it (nil when there is none).
func (r reader) current(ctx context.Context, key string) (*resourceDoc, error) {
	var d resourceDoc
	if r.journal != "" {
		err := r.s.res.FindOne(r.c(ctx), bson.D{{Key: "_id", Value: key + "#" + r.journal}}).Decode(&d)
		if err == nil {
			return &d, nil
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return nil, internal("read", err)
		}
	}
	err := r.s.res.FindOne(r.c(ctx), bson.D{{Key: "_id", Value: key}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("read", err)
	}
	return &d, nil
}

func (r reader) c(ctx context.Context) context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return ctx
}

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Version, error) {
	s.lock.RLock()
	defer s.lock.RUnlock()
	return reader{s: s}.read(ctx, typ, id)
}

// VRead returns one version.
func (s *Store) VRead(ctx context.Context, typ, id string, vid int) (store.Version, error) {
	s.lock.RLock()
	defer s.lock.RUnlock()
	var d versionDoc
	err := s.ver.FindOne(ctx, bson.D{{Key: "_id", Value: typ + "/" + id + "/" + strconv.Itoa(vid)}, {Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "no version %d of %s/%s", vid, typ, id)
	}
	if err != nil {
		return store.Version{}, internal("vread", err)
	}
	return fromVersionDoc(d), nil
}

// History returns versions newest first.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (*store.HistoryResult, error) {
	s.lock.RLock()
	defer s.lock.RUnlock()
	filter := bson.D{{Key: "pend", Value: bson.D{{Key: "$exists", Value: false}}}}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "type", Value: q.Type})
	}
	if q.ID != "" {
		filter = append(filter, bson.E{Key: "id", Value: q.ID})
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "ts", Value: bson.D{{Key: "$gte", Value: q.Since.UnixNano()}}})
	}
	res := &store.HistoryResult{}
	n, err := s.ver.CountDocuments(ctx, filter)
	if err != nil {
		return nil, internal("history", err)
	}
	res.Total = int(n)
	if q.Cursor != "" {
		seq, err := strconv.ParseInt(q.Cursor, 36, 64)
		if err != nil || seq <= 0 {
			return nil, fhir.Errorf(fhir.Invalid, "_cursor", "the paging cursor is not valid")
		}
		filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$lt", Value: seq}}})
	}
	count := max(q.Count, 1)
	cur, err := s.ver.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(int64(count+1)))
	if err != nil {
		return nil, internal("history", err)
	}
	var docs []versionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, internal("history", err)
	}
	for i, d := range docs {
		if i == count {
			res.Next = strconv.FormatInt(docs[i-1].Seq, 36)
			break
		}
		res.Versions = append(res.Versions, fromVersionDoc(d))
	}
	return res, nil
}

// Search returns one page of matches.
func (s *Store) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	s.lock.RLock()
	defer s.lock.RUnlock()
	return reader{s: s}.search(ctx, q)
}

func inCompartment(d resourceDoc, q *fhir.Query) bool {
	c := q.Compartment
	if c == nil {
		return true
	}
	if c.Type == q.Type && d.LID == c.ID {
		return true
	}
	for _, x := range d.Index {
		if x.RT == c.Type && x.RI == c.ID {
			for _, p := range c.Params {
				if x.P == p {
					return true
				}
			}
		}
	}
	return false
}

func paramMatches(d resourceDoc, p fhir.Param, chains []map[string]bool, has map[string]bool) bool {
	if p.Has != nil {
		return has[d.LID]
	}
	if len(p.Chain) > 0 {
		for i, cq := range p.Chain {
			for _, x := range d.Index {
				if x.P == p.Def.Code && x.RT == cq.Type && chains[i][x.RI] {
					return true
				}
			}
		}
		return false
	}
	param := p.Def.Code
	if p.Modifier == "of-type" {
		param += ":of-type"
	}
	if p.Missing != nil {
		for _, x := range d.Index {
			if x.P == param {
				return !*p.Missing
			}
		}
		return *p.Missing
	}
	any := false
	for _, x := range d.Index {
		if x.P != param {
			continue
		}
		for _, v := range p.Values {
			if valueMatches(p, x, v) {
				any = true
				break
			}
		}
		if any {
			break
		}
	}
	if p.Modifier == "not" {
		return !any
	}
	return any
}

// cursor is the position after a page's last match.
type cursor struct {
	Keys []string `json:"k"`
	Row  int64    `json:"r"`
}

func encodeCursor(keys []sortValue, row int64) string {
	c := cursor{Row: row}
	for _, k := range keys {
		switch k.kind {
		case 'i':
			c.Keys = append(c.Keys, "i:"+strconv.FormatInt(k.i, 10))
		case 'f':
			c.Keys = append(c.Keys, "f:"+strconv.FormatFloat(k.f, 'g', -1, 64))
		default:
			c.Keys = append(c.Keys, "s:"+k.s)
		}
	}
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

type decoded struct {
	keys []sortValue
	row  int64
}

func decodeCursor(s string, sortKeys []fhir.SortKey) (decoded, error) {
	bad := fhir.Errorf(fhir.Invalid, "_cursor", "the paging cursor is not valid: start the search again")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return decoded{}, bad
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || len(c.Keys) != len(sortKeys) || c.Row <= 0 {
		return decoded{}, bad
	}
	out := decoded{row: c.Row}
	for i, k := range c.Keys {
		want := sortKeyOf(nil, sortKeys[i]).kind
		kind, val, ok := strings.Cut(k, ":")
		if !ok || len(kind) != 1 || kind[0] != want {
			return decoded{}, bad
		}
		sv := sortValue{kind: want}
		switch want {
		case 'i':
			if sv.i, err = strconv.ParseInt(val, 10, 64); err != nil {
				return decoded{}, bad
			}
		case 'f':
			if sv.f, err = strconv.ParseFloat(val, 64); err != nil {
				return decoded{}, bad
			}
		default:
			sv.s = val
		}
		out.keys = append(out.keys, sv)
	}
	return out, nil
}
