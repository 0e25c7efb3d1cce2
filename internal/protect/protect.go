// Package protect guards askgate's GraphQL endpoint against operations that
// would cost too much to parse, validate or run, and decides which
// documents may run at all.
//
// Everything here is checked before a resolver runs, and every refusal is a
// *gqlerror.Error whose extensions.code is one of the contract's codes and
// whose message is safe to show to a client:
//
//   - Operation limits ([Limits]): document size ([CheckSize]), parser
//     tokens (enforced by the parser itself; see [Limits.ParserTokenLimit]
//     and [IsTokenLimitError]), and, over the parsed document, depth,
//     aliases, root fields and directives ([Limits.Check]), all exceeded
//     limits reported together.
//   - Query cost ([Cost], [CheckCost]): a static, IBM/Shopify-style cost
//     computed from the @cost and @listSize directives of the schema, so
//     that each field's weight is documented where the field is.
//   - Persisted queries: automatic persisted queries ([APQ]) and trusted
//     documents ([Trusted]).
//
// The functions over documents work on gqlparser's AST and are pure: they
// keep no state between calls and are safe for concurrent use.
package protect
