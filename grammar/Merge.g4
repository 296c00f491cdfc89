// Merge.g4 - the grammar of .merge recipes (see docs/language.md).
grammar Merge;

recipe      : decl* EOF ;
decl        : modelDecl | loraDecl | paramDecl | defDecl | mergeDecl | layersDecl | bundleDecl ;
modelDecl   : 'model' IDENT '=' STRING ;
// `on` is a word, not a keyword (names like `on` stay usable): ASTBuilder checks it.
loraDecl    : 'lora' name=IDENT '=' STRING onWord=IDENT target=IDENT ;
paramDecl   : 'param' IDENT '=' signedNumber ;
signedNumber: '-'? NUMBER ;
defDecl     : 'def' IDENT '(' (defParam (',' defParam)*)? ')' '=' expr ;
// `name: kind` declares what the parameter accepts (a density, a seed, ...; Sema's ParamKind).
defParam    : name=IDENT (':' kind=IDENT)? ('=' expr)? ;
mergeDecl   : 'merge' '{' mergeRule* '}'      # ruleBlock
            | 'merge' expr               # singleRule
            ;
mergeRule   : (patterns | '_') '=>' expr ;
patterns    : STRING ('|' STRING)* ;

// Alternatives listed first bind tighter: unary minus, then * / @, then + -, then
// comparisons; `let ... in BODY` binds loosest (its body extends as far as it can).
expr        : '-' expr                                            # negExpr
            | expr op=('*' | '/' | '@') expr                      # mulExpr
            | expr op=('+' | '-') expr                            # addExpr
            | expr op=('<' | '>' | '<=' | '>=' | '==' | '!=') expr # cmpExpr
            | primary                                             # primaryExpr
            | 'let' letNames '=' value=expr 'in' body=expr        # letExpr
            ;
// `let y = ...` binds one name; `let (u, s, vt) = svd(x)` one per item of a list.
letNames    : IDENT                                               # letName
            | '(' IDENT (',' IDENT)* ')'                          # letTuple
            ;
primary     : NUMBER                                             # numberLit
            | STRING                                             # stringLit
            | IDENT '(' (argument (',' argument)*)? ')'          # callExpr
            | IDENT '[' expr ']'                                 # indexExpr
            | IDENT                                              # nameRef
            | 'model'                                            # modelScopeRef
            | '[' (expr (',' expr)*)? ']'                        # listExpr
            | '(' expr ')'                                       # parenExpr
            ;
argument    : (IDENT '=')? expr ;
// The output's layers as slices of source layers: `layers [a[0:24], b[20:40]]`; a slice in
// parentheses names several sources of one length, which the rules merge. Last among the
// rules, so its literals number after the others (the "expecting {...}" lists keep their order).
layersDecl  : 'layers' '[' layerSlice (',' layerSlice)* ']' ;
layerSlice  : layerSource | '(' layerSource (',' layerSource)* ')' ;
layerSource : IDENT '[' start=signedNumber ':' end=signedNumber ']' ;
// A compressed bundle (`merge compress(...)`'s output) as an input: `zoo[i]` is member i.
// Last, so that its keyword numbers after the others.
bundleDecl  : 'bundle' IDENT '=' STRING ;

NUMBER      : DIGITS ('.' DIGITS?)? EXPONENT? | '.' DIGITS EXPONENT? ;
IDENT       : [a-zA-Z_] [a-zA-Z0-9_]* ;
STRING      : '"' (~["\\\r\n] | '\\' .)* '"' ;
COMMENT     : '#' ~[\r\n]* -> skip ;
WS          : [ \t\r\n]+ -> skip ;
// Anything else becomes a token the parser rejects with a located message.
UNKNOWN     : . ;

fragment DIGITS   : [0-9]+ ;
fragment EXPONENT : [eE] [+-]? DIGITS ;
